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
pub mod flags;
pub mod introspect;
pub mod rt;
pub mod services;
pub mod stack;

use pyo3::prelude::*;

/// Benchmark hook (`benches/python_overhead.py`): `n` KV gets of `key` from `table` done
/// from Rust, each blocked on the same runtime the way a blocking Python call is; returns the
/// seconds taken. The Python loop over `cloud.kv.get_item` minus this is the binding's cost.
#[pyfunction]
fn _bench_kv_get(
    py: Python<'_>,
    cloud: &Bound<'_, cloud::Cloud>,
    table: String,
    key: String,
    n: u64,
) -> PyResult<f64> {
    let kv = cloud.get().cloud.kv().map_err(errors::to_py)?.clone();
    py.detach(|| {
        let rt = rt::runtime();
        let start = std::time::Instant::now();
        for _ in 0..n {
            let got = rt.block_on(kv.get_item(&table, mvi_core::kv::Key::new(key.as_str())))?;
            std::hint::black_box(got);
        }
        Ok(start.elapsed().as_secs_f64())
    })
    .map_err(errors::to_py)
}

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
    m.add_class::<flags::Flags>()?;
    m.add_class::<flags::FlagClient>()?;
    m.add_class::<flags::PyEvalContext>()?;
    m.add_class::<flags::PyEvaluation>()?;
    m.add("RESOURCE_TYPES", stack::TYPES.to_vec())?;
    m.add("HAS_AWS", cfg!(feature = "aws"))?;
    m.add_function(wrap_pyfunction!(_bench_kv_get, m)?)?;
    Ok(())
}
