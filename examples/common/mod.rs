//! Helpers shared by the examples.
#![allow(dead_code)] // each example uses its own subset

use std::time::Duration;

use mvi::{Error, ErrorKind, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An error of an example's own step.
pub fn failed(what: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        mvi::Service::Backend,
        "example",
        format!("{what}: {why}"),
    )
}

/// A plain HTTP/1.1 GET (the examples keep their dependencies to mvi and tokio).
pub async fn http_get(url: &str, path: &str) -> Result<(u16, String)> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let io = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(15), io)
        .await
        .map_err(|_| failed("GET", "timed out"))?
        .map_err(|e| failed("GET", e))?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((status, body))
}
