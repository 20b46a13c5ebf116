//! `mvi_core::Error` as the Python exceptions of `mvi._errors`, one class per kind.

use mvi_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFound",
        ErrorKind::AlreadyExists => "AlreadyExists",
        ErrorKind::PreconditionFailed => "PreconditionFailed",
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::PermissionDenied => "PermissionDenied",
        ErrorKind::Unauthenticated => "Unauthenticated",
        ErrorKind::RateLimited => "RateLimited",
        ErrorKind::Unavailable => "Unavailable",
        ErrorKind::Unsupported => "Unsupported",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::DeploymentFailed => "DeploymentFailed",
        _ => "Internal",
    }
}

fn raise(
    py: Python<'_>,
    class: &str,
    message: String,
    fill: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<()>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || py.import("mvi._errors").map(Bound::unbind))?;
        let exc = module.bind(py).getattr(class)?.call1((message.clone(),))?;
        fill(&exc)?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|e| e)
}

/// The Python exception for an mvi error: its class by kind, with `kind`, `service`,
/// `operation`, `resource` and `retryable` attributes.
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| {
        raise(py, class_name(e.kind()), e.to_string(), |exc| {
            exc.setattr("kind", e.kind().as_str())?;
            exc.setattr("service", e.service().as_str())?;
            exc.setattr("operation", e.operation())?;
            exc.setattr("resource", e.resource())?;
            exc.setattr("retryable", e.is_retryable())?;
            Ok(())
        })
    })
}

/// An `mvi.InvalidArgument` for bad input found by the binding itself (a wrong field type).
pub fn invalid(message: String) -> PyErr {
    Python::attach(|py| {
        raise(py, "InvalidArgument", message, |exc| {
            exc.setattr("kind", ErrorKind::InvalidArgument.as_str())
        })
    })
}
