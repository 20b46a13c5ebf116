//! mvi-py: the Python binding of mvi, built by maturin into the package `mvi` (native
//! module `mvi._mvi`; the pure-Python part is in `python/mvi`).
//!
//! Thin by design: each method converts its arguments, calls the Rust API of mvi-core (the
//! service traits, the stack engine) and converts the result. Blocking methods release the
//! GIL while Rust works; the asyncio flavour runs the same futures on the same tokio runtime.
#![deny(missing_docs)]

pub mod cloud;
pub mod conv;
pub mod errors;
pub mod introspect;
pub mod rt;
pub mod services;
pub mod stack;

use pyo3::prelude::*;

/// The native module `mvi._mvi`.
#[pymodule]
fn _mvi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use services::*;
    m.add_class::<cloud::Cloud>()?;
    m.add_class::<cloud::AsyncCloud>()?;
    m.add_class::<cloud::LocalCloud>()?;
    m.add_class::<cloud::AwsCloud>()?;
    m.add_class::<BlobSvc>()?;
    m.add_class::<AsyncBlobSvc>()?;
    m.add_class::<KvSvc>()?;
    m.add_class::<AsyncKvSvc>()?;
    m.add_class::<CryptoSvc>()?;
    m.add_class::<AsyncCryptoSvc>()?;
    m.add_class::<LogsSvc>()?;
    m.add_class::<AsyncLogsSvc>()?;
    m.add_class::<LogTail>()?;
    m.add_class::<MetricsSvc>()?;
    m.add_class::<AsyncMetricsSvc>()?;
    m.add_class::<ImagesSvc>()?;
    m.add_class::<AsyncImagesSvc>()?;
    m.add_class::<ContainersSvc>()?;
    m.add_class::<AsyncContainersSvc>()?;
    m.add_class::<LoadBalancersSvc>()?;
    m.add_class::<AsyncLoadBalancersSvc>()?;
    m.add_class::<DatabasesSvc>()?;
    m.add_class::<AsyncDatabasesSvc>()?;
    m.add_class::<VmsSvc>()?;
    m.add_class::<AsyncVmsSvc>()?;
    m.add_class::<NetworksSvc>()?;
    m.add_class::<AsyncNetworksSvc>()?;
    m.add_class::<stack::Stack>()?;
    m.add_class::<stack::PyOutput>()?;
    m.add("RESOURCE_TYPES", stack::TYPES.to_vec())?;
    m.add("HAS_AWS", cfg!(feature = "aws"))?;
    Ok(())
}
