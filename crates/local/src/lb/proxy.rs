//! The data plane: an HTTP/1.1 reverse proxy or a TCP relay per listener.
//!
//! HTTP requests go upstream through one pooled hyper client shared by every listener, so
//! connections to targets are reused across requests (keep-alive), as ELB does. Each accepted
//! connection is its own task; all of them stop when the listener's stop channel closes
//! (the load balancer deleted, or the service dropped).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use mvi_core::lb::Protocol;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::balance::{InFlight, Weighted};
use super::telemetry::{Access, Outcome, Telemetry, What};
use crate::sim::Sim;

/// The pooled client that forwards requests to targets.
pub(crate) type ProxyClient = Client<HttpConnector, Incoming>;

/// What an answer's body is: the target's, streamed, or the load balancer's own.
type ProxyBody = Either<Tracked, Full<Bytes>>;

/// Time to connect to a TCP target before giving up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener at run time.
#[derive(Debug)]
pub(crate) struct ListenerRt {
    /// The load balancer's name (for messages).
    pub lb: String,
    /// The port it listens on.
    pub port: u16,
    /// HTTP or TCP.
    pub protocol: Protocol,
    /// Target groups and weights; swapped whole by `set_weights`.
    pub forward: RwLock<Arc<Weighted>>,
    /// Counters and access lines.
    pub telemetry: Arc<Telemetry>,
    /// Upstream client.
    pub client: ProxyClient,
    /// Time for metric and log timestamps.
    pub sim: Arc<Sim>,
}

impl ListenerRt {
    fn weighted(&self) -> Arc<Weighted> {
        self.forward
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serves `listener` until `stop` closes.
pub(crate) fn spawn(listener: TcpListener, rt: Arc<ListenerRt>, mut stop: watch::Receiver<()>) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset before accept: keep serving the others.
                    tracing::warn!("load balancer {} port {}: accept: {e}", rt.lb, rt.port);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let rt = rt.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = serve_connection(stream, peer, rt) => {}
                    _ = stop.changed() => {}
                }
            });
        }
    });
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, rt: Arc<ListenerRt>) {
    match rt.protocol {
        Protocol::Tcp => relay(stream, peer, rt).await,
        Protocol::Http => {
            // The client's address, made into a header value once per connection.
            let xff = HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            let port = HeaderValue::from(rt.port);
            let service = hyper::service::service_fn(move |req| {
                let rt = rt.clone();
                let xff = xff.clone();
                let port = port.clone();
                async move { Ok::<_, Infallible>(forward(&rt, req, peer, xff, port).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection from {peer}: {e}");
            }
        }
    }
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

async fn forward(
    rt: &ListenerRt,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    xff: HeaderValue,
    port: HeaderValue,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path_and_query().cloned();
    let weighted = rt.weighted();
    let Some(group) = weighted.pick() else {
        return own_answer(
            rt,
            peer,
            method,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            "no target group of this listener has a weight above 0".into(),
        );
    };
    let Some(target) = group.pick() else {
        let why = format!(
            "no healthy target in target group {} (none registered, or all draining or blocked)",
            group.spec.name
        );
        return own_answer(rt, peer, method, path, StatusCode::SERVICE_UNAVAILABLE, why);
    };
    let guard = InFlight::new(target.clone());
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = Some(hyper::http::uri::Scheme::HTTP);
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = path.clone();
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => {
            return own_answer(
                rt,
                peer,
                method,
                path,
                StatusCode::BAD_REQUEST,
                "the request target cannot be forwarded".into(),
            );
        }
    }
    let headers = req.headers_mut();
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.append("x-forwarded-for", xff);
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", port);
    match rt.client.request(req).await {
        Ok(resp) => {
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            let status = resp.status();
            rt.telemetry.record(
                Outcome::Target(status.as_u16(), us),
                Access {
                    at: rt.sim.now(),
                    port: rt.port,
                    peer,
                    target: Some(target.clone()),
                    us,
                    status: status.as_u16(),
                    what: What::Http(method, path),
                },
            );
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONNECTION);
            Response::from_parts(
                parts,
                Either::Left(Tracked {
                    inner: body,
                    _in_flight: guard,
                }),
            )
        }
        Err(e) => {
            drop(guard);
            let why = format!("target {} did not answer: {e}", target.addr);
            own_answer(rt, peer, method, path, StatusCode::BAD_GATEWAY, why)
        }
    }
}

/// The load balancer's own answer (503, 502, 400) with a plain-text body saying why.
fn own_answer(
    rt: &ListenerRt,
    peer: SocketAddr,
    method: hyper::Method,
    path: Option<hyper::http::uri::PathAndQuery>,
    status: StatusCode,
    why: String,
) -> Response<ProxyBody> {
    rt.telemetry.record(
        Outcome::Elb(status.as_u16()),
        Access {
            at: rt.sim.now(),
            port: rt.port,
            peer,
            target: None,
            us: 0,
            status: status.as_u16(),
            what: What::Http(method, path),
        },
    );
    let body = format!(
        "{} {}: load balancer {}: {why}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        rt.lb
    );
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A target's response body that keeps the request counted in flight until it is sent.
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: Incoming,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Copies bytes both ways between the client and a chosen target.
async fn relay(mut client: TcpStream, peer: SocketAddr, rt: Arc<ListenerRt>) {
    let start = Instant::now();
    let weighted = rt.weighted();
    let Some(target) = weighted.pick().and_then(|g| g.pick()) else {
        rt.telemetry.record(
            Outcome::Elb(503),
            tcp_access(&rt, peer, None, 0, "no healthy target".into()),
        );
        return;
    };
    let _guard = InFlight::new(target.clone());
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.sock)).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => {
            let a = tcp_access(&rt, peer, Some(target.clone()), 0, "connect failed".into());
            rt.telemetry.record(Outcome::Elb(502), a);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (up, down) = result.unwrap_or((0, 0));
    let note = format!("{up} bytes in, {down} bytes out");
    rt.telemetry
        .record(Outcome::Flow, tcp_access(&rt, peer, Some(target), us, note));
}

fn tcp_access(
    rt: &ListenerRt,
    peer: SocketAddr,
    target: Option<Arc<super::balance::TargetRt>>,
    us: u64,
    note: String,
) -> Access {
    Access {
        at: rt.sim.now(),
        port: rt.port,
        peer,
        target,
        us,
        status: 0,
        what: What::Tcp(note),
    }
}
