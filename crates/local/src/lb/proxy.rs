//! The data plane: an HTTP/1.1 reverse proxy or a TCP relay per listener.
//!
//! HTTP requests go upstream over keep-alive connections kept per target (`TargetRt::idle`),
//! so connections to targets are reused across requests, as ELB does. A request takes an idle
//! connection (or opens one), and gives it back when the target's response body has been
//! sent whole; that is a lock on a short vector, not a shared client's pool keyed by URI.
//! Each accepted connection is its own task; all of them stop when the listener's stop
//! channel closes (the load balancer deleted, or the service dropped).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mvi_core::lb::Protocol;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::balance::{InFlight, TargetRt, Weighted};
use super::telemetry::{Access, Outcome, Telemetry, What};
use crate::sim::Sim;

/// A keep-alive connection to a target, as kept idle between requests.
#[derive(Debug)]
pub(crate) struct Upstream {
    send: SendRequest<Incoming>,
    /// When it was last given back; idle connections older than `IDLE_TIMEOUT` are closed.
    since: Instant,
}

/// Idle connections kept per target at most; more are closed when given back.
const MAX_IDLE: usize = 256;

/// An idle connection to a target is closed when next met after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let Some(entry) = weighted.pick() else {
        return own_answer(
            rt,
            peer,
            method,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            "no target group of this listener has a weight above 0".into(),
        );
    };
    let group = &entry.group;
    let Some(guard) = group.pick() else {
        let why = format!(
            "no healthy target in target group {} (none registered, or all draining or blocked)",
            group.spec.name
        );
        entry.counters.count(Outcome::Elb(503));
        return own_answer(rt, peer, method, path, StatusCode::SERVICE_UNAVAILABLE, why);
    };
    let target = guard.0.clone();
    let headers = req.headers_mut();
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if !headers.contains_key(header::HOST) {
        // HTTP/1.0 clients may leave it out; the target gets its own address then.
        if let Ok(host) = HeaderValue::from_str(target.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
    }
    headers.append("x-forwarded-for", xff);
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", port);
    // Targets get the origin form (`/path?query`) whatever form the client used.
    if req.uri().authority().is_some() {
        let origin = path
            .clone()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = origin.into();
    }
    match send(&target, req, start).await {
        Ok((resp, upstream)) => {
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            let status = resp.status();
            entry.counters.count(Outcome::Target(status.as_u16(), us));
            rt.telemetry.record(
                Outcome::Target(status.as_u16(), us),
                Access {
                    at: rt.sim.now(),
                    port: rt.port,
                    peer,
                    target: Some(target),
                    us,
                    status: status.as_u16(),
                    what: What::Http(method, path),
                },
            );
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONNECTION);
            let upstream = if body.is_end_stream() {
                // No body (a 204, a 304, a HEAD): the connection is free already.
                give_back(&guard.0, upstream);
                None
            } else {
                Some(upstream)
            };
            Response::from_parts(
                parts,
                Either::Left(Tracked {
                    inner: body,
                    upstream,
                    _in_flight: guard,
                }),
            )
        }
        Err(e) => {
            drop(guard);
            entry.counters.count(Outcome::Elb(502));
            let why = format!("target {} did not answer: {e}", target.addr);
            own_answer(rt, peer, method, path, StatusCode::BAD_GATEWAY, why)
        }
    }
}

/// Sends `req` to `target` over an idle keep-alive connection, or a new one if there is none
/// (or the idle ones turn out closed: the request is then sent again on a new one, as it was
/// never written). Returns the response head and the connection, to give back once the body
/// has been read whole.
async fn send(
    target: &TargetRt,
    mut req: Request<Incoming>,
    now: Instant,
) -> Result<(Response<Incoming>, SendRequest<Incoming>), String> {
    loop {
        let pooled = take_idle(target, now);
        let fresh = pooled.is_none();
        let mut send = match pooled {
            Some(s) => s,
            None => connect(target).await?,
        };
        if send.ready().await.is_err() {
            if fresh {
                return Err("connection closed".into());
            }
            continue;
        }
        match send.try_send_request(req).await {
            Ok(resp) => return Ok((resp, send)),
            Err(mut e) => match e.take_message() {
                // Not written: the idle connection was closed under us; try another.
                Some(r) if !fresh => req = r,
                _ => return Err(e.into_error().to_string()),
            },
        }
    }
}

/// An idle connection to `target` that is still open and not too old, if there is one.
fn take_idle(target: &TargetRt, now: Instant) -> Option<SendRequest<Incoming>> {
    let mut idle = target.idle.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(u) = idle.pop() {
        if !u.send.is_closed() && now.saturating_duration_since(u.since) < IDLE_TIMEOUT {
            return Some(u.send);
        }
    }
    None
}

/// Gives a connection whose response has been read whole back to `target`'s idle ones.
fn give_back(target: &TargetRt, send: SendRequest<Incoming>) {
    if send.is_closed() {
        return;
    }
    let mut idle = target.idle.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < MAX_IDLE {
        idle.push(Upstream {
            send,
            since: Instant::now(),
        });
    }
}

/// Opens a keep-alive connection to `target`; its driver runs as its own task until either
/// side closes it.
async fn connect(target: &TargetRt) -> Result<SendRequest<Incoming>, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.sock)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect: timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection to a target: {e}");
        }
    });
    Ok(send)
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

/// A target's response body that keeps the request counted in flight until it is sent, and
/// gives the connection back to the target's idle ones once it has been read whole (a body
/// dropped before its end leaves the connection to close).
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: Incoming,
    upstream: Option<SendRequest<Incoming>>,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.upstream = None;
                false
            }
            Poll::Pending => false,
        };
        if done && let Some(send) = this.upstream.take() {
            give_back(&this._in_flight.0, send);
        }
        frame
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
    let entry = weighted.pick();
    let Some(guard) = entry.and_then(|e| e.group.pick()) else {
        if let Some(e) = entry {
            e.counters.count(Outcome::Elb(503));
        }
        rt.telemetry.record(
            Outcome::Elb(503),
            tcp_access(&rt, peer, None, 0, "no healthy target".into()),
        );
        return;
    };
    let counters = entry.map(|e| e.counters.clone());
    let target = guard.0.clone();
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.sock)).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => {
            let a = tcp_access(&rt, peer, Some(target.clone()), 0, "connect failed".into());
            if let Some(c) = &counters {
                c.count(Outcome::Elb(502));
            }
            rt.telemetry.record(Outcome::Elb(502), a);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (up, down) = result.unwrap_or((0, 0));
    let note = format!("{up} bytes in, {down} bytes out");
    if let Some(c) = &counters {
        c.count(Outcome::Flow);
    }
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
