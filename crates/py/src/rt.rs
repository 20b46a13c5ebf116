//! Running Rust futures from Python: blocking (the GIL released meanwhile) or as awaitables
//! on the same tokio runtime.

use std::future::Future;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::conv::Out;
use crate::errors::to_py;

/// The one tokio runtime every call runs on (pyo3-async-runtimes' own, so awaitables and
/// blocking calls share it, and background tasks of a backend keep running between calls).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` to completion with the GIL released, then converts its result.
pub fn block<F, T>(py: Python<'_>, fut: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = mvi_core::Result<T>> + Send,
    T: Out,
{
    let v = wait(py, fut)?;
    v.out(py)
}

/// Runs `fut` to completion with the GIL released.
pub fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = mvi_core::Result<T>> + Send,
    T: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking mvi call cannot run inside mvi's own runtime (in an Output.apply \
             function or a progress callback); use plain values there",
        ));
    }
    py.detach(|| runtime().block_on(fut)).map_err(to_py)
}

/// `fut` as a Python awaitable running on the runtime.
pub fn spawn<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = mvi_core::Result<T>> + Send + 'static,
    T: Out,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let v = fut.await.map_err(to_py)?;
        Python::attach(|py| v.out(py))
    })
}
