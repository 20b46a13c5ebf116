//! The stable endpoint of a multi-AZ instance: a TCP relay on a loopback port of its own that
//! forwards every connection to the server that is the primary now, as an RDS endpoint is a
//! DNS name that moves with a failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A relay; dropping it stops it and cuts the connections through it.
#[derive(Debug)]
pub(super) struct Relay {
    port: u16,
    /// The primary's port; 0 while there is none (connections are refused then).
    target: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on 127.0.0.1:`port` (any free port when 0, or when `port` is taken) and
    /// forwards to `target`.
    pub(super) async fn start(port: u16, target: u16) -> std::io::Result<Relay> {
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) if port != 0 => {
                tracing::warn!(port, error = %e, "the database endpoint's port is taken: moving it");
                TcpListener::bind(("127.0.0.1", 0)).await?
            }
            Err(e) => return Err(e),
        };
        let port = listener.local_addr()?.port();
        let target = Arc::new(AtomicU16::new(target));
        let task = tokio::spawn(serve(listener, target.clone()));
        Ok(Relay { port, target, task })
    }

    /// The endpoint's port.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// New connections go to `port` (0: refused until it is set again).
    pub(super) fn point(&self, port: u16) {
        self.target.store(port, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, target: Arc<AtomicU16>) {
    // Owned here, so aborting the relay's task cuts every connection through it.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                let port = target.load(Ordering::Acquire);
                conns.spawn(async move {
                    if port == 0 {
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
