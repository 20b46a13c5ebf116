//! AWS-compatible endpoints: the local services on loopback, in AWS's wire protocols.
//!
//! One HTTP port serves every protocol, as LocalStack's does: a request carrying an
//! `X-Amz-Target` header is a JSON-protocol call (DynamoDB, KMS, CloudWatch Logs), any other is
//! S3's REST protocol. So `AWS_ENDPOINT_URL` alone points an SDK at the local cloud, and the
//! per-service variables (`AWS_ENDPOINT_URL_S3`, ...) name the same address. Behind each
//! protocol is the same service object the program uses (one store, whichever door it is
//! reached through), including any fault layer on it.
//!
//! Every request must be signed (SigV4) with an access key the cloud issued
//! ([`Endpoints::keys`]); its policy ([`mvi_core::access::Policy`]) decides what it may do.
//! The servers hold the services weakly and stop when the last handle on the cloud is
//! dropped, so an endpoint never keeps a state root open.

mod cloudwatch;
mod dynamodb;
pub mod fairness;
mod json;
pub mod keys;
mod kms;
mod logs;
mod repoll;
pub mod s3;
mod sigv4;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use mvi_core::Cloud;
use mvi_core::access::{Account, Policy};
use mvi_core::blob::Blob;
use mvi_core::crypto::Crypto;
use mvi_core::kv::Kv;
use mvi_core::log::Logs;
use mvi_core::metric::Metrics;
use mvi_core::{Op, Result, SecretString, Service};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

pub use keys::{AccessKey, AccessKeys, Principal};

/// The account id of the local cloud's ARNs (as moto's and LocalStack's).
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";
/// The region the endpoints report and expect signatures for by default.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Connections served at once; more wait in the listen queue, so one noisy client cannot
/// exhaust the process's descriptors.
const MAX_CONNECTIONS: usize = 512;
/// The largest XML request body (CompleteMultipartUpload, DeleteObjects): s3s's limit, checked
/// here first from `Content-Length`, since s3s reports a streamed body past it as an internal
/// error rather than S3's `MaxMessageLengthExceeded`.
const MAX_XML_BODY: u64 = 20 * 1024 * 1024;
/// How long a client may take to send a request's headers before the connection is closed
/// (a slow-loris client holds no slot for long).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How the endpoints start: the port and, optionally, fixed admin credentials.
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    /// The loopback port; 0 picks a free one.
    pub port: u16,
    /// Admin credentials to accept instead of freshly generated ones.
    pub admin: Option<AccessKey>,
}

/// Where the local cloud's AWS-compatible endpoints listen, and the keys they accept.
#[derive(Debug, Clone)]
pub struct Endpoints {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    account: Account,
    admin: AccessKey,
    keys: Arc<AccessKeys>,
    backends: Arc<Backends>,
    // Dropping the sender (with the last `Endpoints`) stops the listener and its connections.
    _stop: watch::Sender<()>,
}

/// The services behind the endpoints, held weakly and attached once the cloud is assembled
/// (the endpoints start before the container service, whose replicas get their address).
#[derive(Default)]
pub(crate) struct Backends {
    blob: OnceLock<Weak<dyn Blob>>,
    kv: OnceLock<Weak<dyn Kv>>,
    crypto: OnceLock<Weak<dyn Crypto>>,
    logs: OnceLock<Weak<dyn Logs>>,
    metrics: OnceLock<Weak<dyn Metrics>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("attached", &self.blob.get().is_some())
            .finish()
    }
}

/// The service in `cell`, while the cloud is open.
fn upgrade<T: ?Sized>(cell: &OnceLock<Weak<T>>) -> Option<Arc<T>> {
    cell.get().and_then(Weak::upgrade)
}

impl Backends {
    /// The Blob service, while the cloud is open.
    pub(crate) fn blob(&self) -> Option<Arc<dyn Blob>> {
        upgrade(&self.blob)
    }

    /// The KV service, while the cloud is open.
    pub(crate) fn kv(&self) -> Option<Arc<dyn Kv>> {
        upgrade(&self.kv)
    }

    /// The Crypto service, while the cloud is open.
    pub(crate) fn crypto(&self) -> Option<Arc<dyn Crypto>> {
        upgrade(&self.crypto)
    }

    /// The Log service, while the cloud is open.
    pub(crate) fn logs(&self) -> Option<Arc<dyn Logs>> {
        upgrade(&self.logs)
    }

    /// The Metric service, while the cloud is open.
    pub(crate) fn metrics(&self) -> Option<Arc<dyn Metrics>> {
        upgrade(&self.metrics)
    }
}

impl Endpoints {
    /// Binds the loopback port and starts serving; requests are answered "unavailable" until
    /// [`Endpoints::attach`] gives the services.
    pub(crate) async fn start(config: EndpointConfig) -> Result<Endpoints> {
        let op = Op::new(Service::Backend, "start_endpoints");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|e| {
                op.err(
                    mvi_core::ErrorKind::Unavailable,
                    format!("127.0.0.1:{}", config.port),
                    format!("could not listen for the AWS-compatible endpoints: {e}"),
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| op.internal("endpoint listener", e))?;
        let account = Account::new(DEFAULT_REGION, LOCAL_ACCOUNT_ID);
        let keys = Arc::new(AccessKeys::default());
        let admin = match config.admin {
            Some(key) => {
                keys.insert(&key, "admin".into(), Policy::admin());
                key
            }
            None => keys.issue("admin", Policy::admin()),
        };

        let backends = Arc::new(Backends::default());
        let mut s3 = s3s::service::S3ServiceBuilder::new(s3::S3Door::new(backends.clone()));
        s3.set_auth(s3::KeyLookup(keys.clone()));
        s3.set_access(s3::PolicyCheck {
            keys: keys.clone(),
            account: account.clone(),
        });
        s3.set_host(s3::Hosts {
            domains: vec![format!("localhost:{}", addr.port())],
        });
        let json = json::JsonDoors {
            keys: keys.clone(),
            account: account.clone(),
            backends: backends.clone(),
        };
        let router = Arc::new(Router {
            s3: s3.build(),
            json,
            in_flight: fairness::InFlight::new(keys.clone()),
        });

        let (stop, stop_rx) = watch::channel(());
        tokio::spawn(serve(listener, router, stop_rx));
        Ok(Endpoints {
            shared: Arc::new(Shared {
                addr,
                account,
                admin,
                keys,
                backends,
                _stop: stop,
            }),
        })
    }

    /// Puts the assembled cloud's services behind the endpoints (once; later calls are
    /// ignored).
    pub(crate) fn attach(&self, cloud: &Cloud) -> Result<()> {
        let b = &self.shared.backends;
        let _ = b.blob.set(Arc::downgrade(cloud.blob()?));
        let _ = b.kv.set(Arc::downgrade(cloud.kv()?));
        let _ = b.crypto.set(Arc::downgrade(cloud.crypto()?));
        let _ = b.logs.set(Arc::downgrade(cloud.logs()?));
        let _ = b.metrics.set(Arc::downgrade(cloud.metrics()?));
        Ok(())
    }

    /// The endpoints' URL (`http://127.0.0.1:PORT`), for every service.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The address the endpoints listen on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The region the endpoints expect in signatures' scopes (any is accepted) and report.
    pub fn region(&self) -> &str {
        &self.shared.account.region
    }

    /// The account of the ARNs that policies name.
    pub fn account(&self) -> &Account {
        &self.shared.account
    }

    /// Credentials allowed everything: for the program itself, tools and tests.
    pub fn admin(&self) -> &AccessKey {
        &self.shared.admin
    }

    /// The access keys the endpoints accept: issue scoped ones here.
    pub fn keys(&self) -> &AccessKeys {
        &self.shared.keys
    }

    /// The environment that points an AWS SDK or the AWS CLI at these endpoints with `key`:
    /// the endpoint URL of each service served, the region and the credentials.
    pub fn env(&self, key: &AccessKey) -> Vec<(String, String)> {
        let url = self.url();
        let mut env: Vec<(String, String)> = [
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_KMS",
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
            "AWS_ENDPOINT_URL_CLOUDWATCH",
        ]
        .into_iter()
        .map(|var| (var.to_owned(), url.clone()))
        .collect();
        for (var, value) in [
            ("AWS_REGION", self.region()),
            ("AWS_DEFAULT_REGION", self.region()),
            ("AWS_ACCESS_KEY_ID", key.id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", key.secret.expose()),
        ] {
            env.push((var.to_owned(), value.to_owned()));
        }
        env
    }

    /// `env` as `export NAME=value` lines for a shell.
    pub fn exports(&self, key: &AccessKey) -> String {
        self.env(key)
            .into_iter()
            .map(|(k, v)| format!("export {k}={v}\n"))
            .collect()
    }
}

impl AccessKey {
    /// A key with the given id and secret (fixed credentials for a tool's configuration).
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        AccessKey {
            id: id.into(),
            secret: SecretString::new(secret),
        }
    }
}

/// Picks the protocol of each request.
struct Router {
    s3: s3s::service::S3Service,
    json: json::JsonDoors,
    in_flight: fairness::InFlight,
}

impl Router {
    async fn route(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let json = req.headers().contains_key("x-amz-target");
        // Held while the request is served: each key's share of the endpoint.
        let _permit = match self.in_flight.admit(&req) {
            Ok(p) => p,
            Err(busy) if json => return json_error(400, "ThrottlingException", &busy.message()),
            Err(busy) => {
                return s3_error(s3s::S3Error::with_message(
                    s3s::S3ErrorCode::SlowDown,
                    busy.message(),
                ));
            }
        };
        if json {
            return self.json.serve(req).await;
        }
        if is_query_protocol(&req) {
            return query_refused();
        }
        let length = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Every S3 POST this endpoint serves carries XML (or nothing).
        if req.method() == hyper::Method::POST && length.is_some_and(|n| n > MAX_XML_BODY) {
            return s3_error(s3s::S3Error::with_message(
                s3s::S3ErrorCode::MaxMessageLengthExceeded,
                format!("an XML request body takes at most {MAX_XML_BODY} bytes"),
            ));
        }
        match self.s3.call(req.map(s3s::Body::from)).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!("s3 endpoint: {e:?}");
                json_error(500, "InternalFailure", "the request could not be served")
            }
        }
    }
}

/// Whether a request is in AWS's query protocol (a form POSTed to `/`, as older SDKs call
/// CloudWatch, SQS or SNS); S3 never sends such a request.
fn is_query_protocol(req: &Request<Incoming>) -> bool {
    req.method() == hyper::Method::POST
        && req.uri().path() == "/"
        && req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

/// The query protocol's answer: not served (CloudWatch is served in its JSON protocol, which
/// boto3 and the AWS CLI use).
fn query_refused() -> Response<s3s::Body> {
    let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>\
        this endpoint does not serve AWS's query protocol; CloudWatch is served in its JSON \
        protocol (X-Amz-Target: GraniteServiceVersion20100801.*), as boto3 and the AWS CLI \
        call it</Message></Error></ErrorResponse>";
    let mut resp = Response::new(s3s::Body::from(body.to_owned()));
    *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    resp
}

/// An S3 error in S3's XML shape.
fn s3_error(e: s3s::S3Error) -> Response<s3s::Body> {
    e.to_http_response()
        .unwrap_or_else(|_| json_error(500, "InternalFailure", "the error could not be written"))
}

/// An error in the shape of AWS's JSON protocols (`__type` and `message`).
fn json_error(status: u16, code: &'static str, message: &str) -> Response<s3s::Body> {
    json::error_response(
        "application/x-amz-json-1.0",
        &json::JsonError {
            status,
            ..json::JsonError::new(code, message)
        },
    )
}

async fn serve(listener: TcpListener, router: Arc<Router>, mut stop: watch::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or a reset before accept: keep serving the others.
                tracing::warn!("endpoints: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let router = router.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_connection(stream, peer, router) => {}
                _ = stop.changed() => {}
            }
            drop(permit);
        });
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, router: Arc<Router>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.route(req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = repoll::RepollInPlace::new(connection).await {
        tracing::debug!("endpoint connection from {peer}: {e}");
    }
}
