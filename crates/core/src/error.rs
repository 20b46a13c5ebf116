//! The one error type every service of every backend returns.
//!
//! Backends map their native errors (an `io::Error`, a redb error, an AWS service error) to an
//! [`ErrorKind`] in one place, so a program written against the traits handles "not found" or
//! "precondition failed" the same way on the simulator and on AWS.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, independent of the backend. Programs branch on this, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named resource does not exist.
    NotFound,
    /// A resource with that name or id already exists.
    AlreadyExists,
    /// A conditional operation's condition did not hold (if-match, if-none-match, version).
    PreconditionFailed,
    /// The request itself is malformed: a bad name, an oversize item, a value out of range.
    InvalidArgument,
    /// The caller is known but not allowed to do this (a disabled key, a protected resource).
    PermissionDenied,
    /// The caller could not be identified (missing or bad credentials).
    Unauthenticated,
    /// Too many requests; retry later.
    RateLimited,
    /// The service is (perhaps briefly) unable to answer: retry later.
    Unavailable,
    /// The backend does not offer this operation or service.
    Unsupported,
    /// The operation did not finish in time.
    Timeout,
    /// A fault in the backend itself (corrupt data, a bug, an unexpected native error).
    Internal,
    /// A deployment of a new revision failed and was rolled back: the service runs its last
    /// good revision (the message names the revision, the cause and the rollback).
    DeploymentFailed,
}

impl ErrorKind {
    /// A short lower-case phrase for messages ("not found", "precondition failed").
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PreconditionFailed => "precondition failed",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Internal => "internal error",
            ErrorKind::DeploymentFailed => "deployment failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which service an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// Object storage.
    Blob,
    /// Key-value tables.
    Kv,
    /// Keys, encryption, audit.
    Crypto,
    /// Log groups and streams.
    Log,
    /// Metrics and alarms.
    Metric,
    /// Image registry.
    Image,
    /// Container services and tasks.
    Container,
    /// Load balancers.
    LoadBalancer,
    /// Managed databases.
    Database,
    /// Virtual machines.
    Vm,
    /// Networks: VPCs, subnets, security groups.
    Vpc,
    /// The stack engine.
    Stack,
    /// Feature flags (on top of KV).
    Flags,
    /// Backend set-up (building a `Cloud`, opening the state root).
    Backend,
}

impl Service {
    /// The service's name as used in messages and test names.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Blob => "blob",
            Service::Kv => "kv",
            Service::Crypto => "crypto",
            Service::Log => "log",
            Service::Metric => "metric",
            Service::Image => "image",
            Service::Container => "container",
            Service::LoadBalancer => "lb",
            Service::Database => "database",
            Service::Vm => "vm",
            Service::Vpc => "vpc",
            Service::Stack => "stack",
            Service::Flags => "flags",
            Service::Backend => "backend",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every mvi operation.
///
/// `Display` is one readable sentence naming the service, the operation and the resource:
/// `blob put_object on "photos/cat.jpg": precondition failed: the object exists (if-none-match)`.
pub struct Error {
    kind: ErrorKind,
    service: Service,
    operation: Cow<'static, str>,
    resource: Option<String>,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` from `service`'s `operation`, with a human message.
    pub fn new(
        kind: ErrorKind,
        service: Service,
        operation: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Error {
            kind,
            service,
            operation: operation.into(),
            resource: None,
            message: bounded(message.into(), MAX_MESSAGE),
            source: None,
        }
    }

    /// Names the resource the operation was about (a bucket, `bucket/key`, a key id).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(bounded(resource.into(), MAX_RESOURCE));
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The service the error came from.
    pub fn service(&self) -> Service {
        self.service
    }

    /// The operation that failed (`put_object`, `encrypt`, ...).
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The resource the operation was about, when there is one.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The human part of the message, without service, operation and resource.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same call again later may succeed (rate limits, unavailability,
    /// time-outs). Conditional-write conflicts are not retryable: the caller must re-read.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    /// Shorthand for `self.kind() == ErrorKind::NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.operation)?;
        if let Some(resource) = &self.resource {
            write!(f, " on {resource:?}")?;
        }
        write!(f, ": {}", self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("service", &self.service)
            .field("operation", &self.operation)
            .field("resource", &self.resource)
            .field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The most of a resource's name an error quotes (a 10 MB object key is not repeated).
pub const MAX_RESOURCE: usize = 256;
/// The most of a message an error keeps (messages quote inputs).
pub const MAX_MESSAGE: usize = 1024;

/// `s`, or its first `max` bytes (on a character boundary) followed by `… (N bytes)`: what
/// an error may quote of an input of any size.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let len = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("… ({len} bytes)"));
    s
}

/// `s` as a message quotes it: in quotes, at most [`MAX_RESOURCE`] bytes of it.
pub fn quote(s: &str) -> String {
    if s.len() <= MAX_RESOURCE {
        return format!("{s:?}");
    }
    let mut cut = MAX_RESOURCE;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..cut], s.len())
}

/// `Result` with mvi's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok(None)` for a NotFound error: for lookups where absence is an answer, not a failure.
pub fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A cheap builder of errors for one service and operation, so backends write
/// `op.not_found(name, "no such bucket")` instead of repeating the service and operation.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// The service.
    pub service: Service,
    /// The operation's name.
    pub operation: &'static str,
}

impl Op {
    /// An error-builder for `service`'s `operation`.
    pub const fn new(service: Service, operation: &'static str) -> Self {
        Op { service, operation }
    }

    /// An error of `kind` about `resource`.
    pub fn err(
        &self,
        kind: ErrorKind,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::new(kind, self.service, self.operation, message).with_resource(resource)
    }

    /// [`ErrorKind::NotFound`] about `resource`.
    pub fn not_found(&self, resource: impl Into<String>, message: impl Into<String>) -> Error {
        self.err(ErrorKind::NotFound, resource, message)
    }

    /// [`ErrorKind::AlreadyExists`] about `resource`.
    pub fn already_exists(&self, resource: impl Into<String>, message: impl Into<String>) -> Error {
        self.err(ErrorKind::AlreadyExists, resource, message)
    }

    /// [`ErrorKind::InvalidArgument`] about `resource`.
    pub fn invalid(&self, resource: impl Into<String>, message: impl Into<String>) -> Error {
        self.err(ErrorKind::InvalidArgument, resource, message)
    }

    /// [`ErrorKind::PreconditionFailed`] about `resource`.
    pub fn precondition(&self, resource: impl Into<String>, message: impl Into<String>) -> Error {
        self.err(ErrorKind::PreconditionFailed, resource, message)
    }

    /// [`ErrorKind::PermissionDenied`] about `resource`.
    pub fn denied(&self, resource: impl Into<String>, message: impl Into<String>) -> Error {
        self.err(ErrorKind::PermissionDenied, resource, message)
    }

    /// [`ErrorKind::Internal`] about `resource`, keeping the native cause.
    pub fn internal(&self, resource: impl Into<String>, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        self.err(ErrorKind::Internal, resource, source.to_string())
            .with_source(source)
    }

    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(&self, message: impl Into<String>) -> Error {
        Error::new(
            ErrorKind::Unsupported,
            self.service,
            self.operation,
            message,
        )
    }
}

/// Maps an io error about `path` to an mvi error of the matching kind.
pub fn io_error(op: Op, path: &std::path::Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind as Io;
    let kind = match e.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::AlreadyExists => ErrorKind::AlreadyExists,
        Io::PermissionDenied => ErrorKind::PermissionDenied,
        Io::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Internal,
    };
    op.err(kind, path.display().to_string(), e.to_string())
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_service_operation_resource_and_kind() {
        let e = Op::new(Service::Blob, "put_object")
            .precondition("photos/cat.jpg", "the object exists");
        assert_eq!(
            e.to_string(),
            "blob put_object on \"photos/cat.jpg\": precondition failed: the object exists"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn huge_inputs_are_quoted_in_part_with_their_length() {
        let key = "k".repeat(10 << 20);
        let e = Op::new(Service::Blob, "get_object").not_found(&key, format!("no object {key:?}"));
        let shown = e.to_string();
        assert!(
            shown.len() < 2 * (MAX_RESOURCE + MAX_MESSAGE),
            "{} bytes",
            shown.len()
        );
        assert!(shown.contains("(10485760 bytes)"), "{}", &shown[..300]);
        assert!(e.resource().is_some_and(|r| r.len() < MAX_RESOURCE + 32));
        // Cut on a character boundary.
        let wide = "é".repeat(1000);
        assert!(bounded(wide.clone(), 7).starts_with("ééé…"));
        assert_eq!(quote("short"), "\"short\"");
        assert!(quote(&wide).ends_with("(2000 bytes)"));
    }

    #[test]
    fn retryable_kinds() {
        for (kind, retry) in [
            (ErrorKind::RateLimited, true),
            (ErrorKind::Unavailable, true),
            (ErrorKind::Timeout, true),
            (ErrorKind::NotFound, false),
            (ErrorKind::Internal, false),
        ] {
            assert_eq!(
                Error::new(kind, Service::Kv, "get", "").is_retryable(),
                retry,
                "{kind}"
            );
        }
    }
}
