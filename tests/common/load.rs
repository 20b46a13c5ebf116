//! A bounded load generator for tests of change under traffic: a few keep-alive HTTP/1.1
//! clients sending `GET path` in turn, each answer recorded (when, status, body), so a test
//! can count what failed and which version answered when.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Requests one client sends at most, whatever the test does.
const MAX_PER_CLIENT: usize = 50_000;
/// The longest a load runs, whatever the test does.
const MAX_RUN: Duration = Duration::from_secs(180);
/// The longest one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One answer (or failure).
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent, since the load started.
    pub sent: Duration,
    /// When its answer was complete.
    pub done: Duration,
    /// HTTP status, or 0 when the request failed without one.
    pub status: u16,
    /// The body (or the error).
    pub body: String,
}

impl Sample {
    /// Answered 200.
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// The `version=...` the body names, if any.
    pub fn version(&self) -> Option<&str> {
        self.body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("version="))
    }
}

/// A running load.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `clients` clients on `url` (`http://127.0.0.1:PORT`), each sending `GET path`,
    /// pausing `pause` between requests.
    pub fn start(url: &str, path: &str, clients: usize, pause: Duration) -> Load {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|_| {
                let (addr, path, stop) = (addr.clone(), path.to_string(), stop.clone());
                tokio::spawn(client(addr, path, pause, started, stop, sent.clone()))
            })
            .collect();
        Load {
            started,
            stop,
            sent,
            clients,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients and returns every sample, in the order they were sent.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Release);
        let mut samples = Vec::new();
        for c in self.clients {
            samples.extend(c.await.unwrap_or_default());
        }
        samples.sort_by_key(|s| s.sent);
        Report { samples }
    }
}

/// What a load saw.
#[derive(Debug)]
pub struct Report {
    /// Every answer, by the time it was sent.
    pub samples: Vec<Sample>,
}

impl Report {
    /// The requests that did not get a 200.
    pub fn failed(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.ok()).collect()
    }

    /// Answers sent at or after `t` (since the load started).
    pub fn sent_after(&self, t: Duration) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.sent >= t)
    }

    /// Answers sent within `[from, to)`.
    pub fn sent_between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.sent >= from && s.sent < to)
    }

    /// A one-line summary: totals and the first failures.
    pub fn summary(&self) -> String {
        let failed = self.failed();
        let first: Vec<String> = failed
            .iter()
            .take(5)
            .map(|s| format!("[{:?} {} {}]", s.sent, s.status, s.body))
            .collect();
        format!(
            "{} requests, {} failed {}",
            self.samples.len(),
            failed.len(),
            first.join(" ")
        )
    }
}

async fn client(
    addr: String,
    path: String,
    pause: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    counter: Arc<AtomicUsize>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    while !stop.load(Ordering::Acquire)
        && samples.len() < MAX_PER_CLIENT
        && started.elapsed() < MAX_RUN
    {
        let sent = started.elapsed();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let sender = match conn.as_mut() {
                Some(s) if s.is_ready() => s,
                _ => {
                    let stream = TcpStream::connect(&addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    stream.set_nodelay(true).ok();
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(|e| format!("handshake: {e}"))?;
                    tokio::spawn(connection);
                    conn.insert(sender)
                }
            };
            let req = Request::get(path.as_str())
                .header("host", addr.as_str())
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).trim().to_string()))
        })
        .await;
        let (status, body) = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                conn = None;
                (0, e)
            }
            Err(_) => {
                conn = None;
                (0, "timed out".to_string())
            }
        };
        counter.fetch_add(1, Ordering::AcqRel);
        samples.push(Sample {
            sent,
            done: started.elapsed(),
            status,
            body,
        });
        tokio::time::sleep(pause).await;
    }
    samples
}
