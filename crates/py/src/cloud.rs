//! The cloud handles: `Cloud` (every service of one backend), `LocalCloud` and `AwsCloud`.

use pyo3::prelude::*;

use crate::conv::rec;
use crate::errors::to_py;
use crate::rt::{block, spawn, wait};
use crate::services::*;

macro_rules! accessors {
    ($($field:ident: $sync:ident / $asy:ident;)*) => {
        #[pymethods]
        impl Cloud {
            $(
                #[doc = concat!("The `", stringify!($field), "` service.")]
                #[getter]
                fn $field(&self) -> PyResult<$sync> {
                    Ok($sync { svc: self.cloud.$field().map_err(to_py)?.clone() })
                }
            )*

            /// The asyncio flavour of this cloud: the same services, methods return awaitables.
            #[getter]
            fn aio(&self) -> AsyncCloud {
                AsyncCloud { cloud: self.cloud.clone() }
            }

            /// The backend's name: `"local"` or `"aws"`.
            #[getter]
            fn backend(&self) -> &'static str {
                self.cloud.backend()
            }

            fn __repr__(&self) -> String {
                format!("<mvi cloud: {} backend>", self.cloud.backend())
            }

            /// Deploys a service (`ServiceSpec`): creates it, or moves it to the new spec by
            /// its deployment strategy (rolling, blue-green, canary), calling
            /// `on_progress(service, message)` with every step. A revision that fails is
            /// rolled back and raises `DeploymentFailed`.
            #[pyo3(signature = (spec, *, on_progress=None))]
            fn deploy(
                &self,
                py: Python<'_>,
                spec: &Bound<'_, PyAny>,
                on_progress: Option<Py<PyAny>>,
            ) -> PyResult<Py<PyAny>> {
                let spec = service_spec(spec)?;
                let d = deployer(&self.cloud, on_progress);
                block(py, async move { d.deploy(spec).await.map(rec("ServiceInfo")) })
            }

            /// Promotes a blue-green deployment waiting for it (`auto_promote=False`).
            fn promote(&self, py: Python<'_>, service: String) -> PyResult<Py<PyAny>> {
                let d = deployer(&self.cloud, None);
                block(py, async move { d.promote(&service).await.map(rec("ServiceInfo")) })
            }

            /// Rolls back a blue-green or canary deployment in progress.
            fn rollback(&self, py: Python<'_>, service: String) -> PyResult<Py<PyAny>> {
                let d = deployer(&self.cloud, None);
                block(py, async move { d.rollback(&service).await.map(rec("ServiceInfo")) })
            }
        }

        #[pymethods]
        impl AsyncCloud {
            $(
                #[doc = concat!("The `", stringify!($field), "` service (asyncio).")]
                #[getter]
                fn $field(&self) -> PyResult<$asy> {
                    Ok($asy { svc: self.cloud.$field().map_err(to_py)?.clone() })
                }
            )*

            fn __repr__(&self) -> String {
                format!("<mvi async cloud: {} backend>", self.cloud.backend())
            }

            /// `Cloud.deploy`, as an awaitable.
            #[pyo3(signature = (spec, *, on_progress=None))]
            fn deploy<'py>(
                &self,
                py: Python<'py>,
                spec: &Bound<'_, PyAny>,
                on_progress: Option<Py<PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let spec = service_spec(spec)?;
                let d = deployer(&self.cloud, on_progress);
                spawn(py, async move { d.deploy(spec).await.map(rec("ServiceInfo")) })
            }

            /// `Cloud.promote`, as an awaitable.
            fn promote<'py>(&self, py: Python<'py>, service: String) -> PyResult<Bound<'py, PyAny>> {
                let d = deployer(&self.cloud, None);
                spawn(py, async move { d.promote(&service).await.map(rec("ServiceInfo")) })
            }

            /// `Cloud.rollback`, as an awaitable.
            fn rollback<'py>(&self, py: Python<'py>, service: String) -> PyResult<Bound<'py, PyAny>> {
                let d = deployer(&self.cloud, None);
                spawn(py, async move { d.rollback(&service).await.map(rec("ServiceInfo")) })
            }
        }
    };
}

/// Deployments on `cloud`, calling the Python `on_progress(service, message)` if given (an
/// exception in it is reported as unraisable, never stopping the deployment).
fn deployer(cloud: &mvi_core::Cloud, on_progress: Option<Py<PyAny>>) -> mvi_core::deploy::Deployer {
    let d = mvi_core::deploy::Deployer::new(cloud);
    match on_progress {
        None => d,
        Some(cb) => d.progress(std::sync::Arc::new(move |service: &str, message: &str| {
            Python::attach(|py| {
                if let Err(e) = cb.bind(py).call1((service, message)) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            })
        })),
    }
}

/// Every service of one backend. Get one from `LocalCloud(...)` or `AwsCloud(...)`.
#[pyclass(frozen, subclass, module = "mvi")]
#[derive(Debug)]
pub struct Cloud {
    pub(crate) cloud: mvi_core::Cloud,
}

/// The asyncio view of a `Cloud` (`cloud.aio`).
#[pyclass(frozen, module = "mvi")]
#[derive(Debug)]
pub struct AsyncCloud {
    pub(crate) cloud: mvi_core::Cloud,
}

accessors! {
    blob: BlobSvc / AsyncBlobSvc;
    kv: KvSvc / AsyncKvSvc;
    crypto: CryptoSvc / AsyncCryptoSvc;
    logs: LogsSvc / AsyncLogsSvc;
    metrics: MetricsSvc / AsyncMetricsSvc;
    images: ImagesSvc / AsyncImagesSvc;
    containers: ContainersSvc / AsyncContainersSvc;
    load_balancers: LoadBalancersSvc / AsyncLoadBalancersSvc;
    databases: DatabasesSvc / AsyncDatabasesSvc;
    vms: VmsSvc / AsyncVmsSvc;
    networks: NetworksSvc / AsyncNetworksSvc;
}

/// The local backend: every service simulated on this machine, state under `root`
/// (`None` with `in_memory=True` keeps it in memory), ids deterministic by `seed`.
#[pyclass(frozen, extends = Cloud, module = "mvi")]
#[derive(Debug)]
pub struct LocalCloud {}

#[pymethods]
impl LocalCloud {
    #[new]
    #[pyo3(signature = (root=None, *, seed=None, in_memory=false, principal=None))]
    fn new(
        py: Python<'_>,
        root: Option<std::path::PathBuf>,
        seed: Option<u64>,
        in_memory: bool,
        principal: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut b = mvi_local::LocalCloud::builder();
        if in_memory {
            if root.is_some() {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "give root or in_memory=True, not both",
                ));
            }
            b = b.in_memory();
        } else {
            b = b.root(root.unwrap_or_else(|| ".mvi".into()));
        }
        if let Some(seed) = seed {
            b = b.seed(seed);
        }
        if let Some(p) = principal {
            b = b.principal(p);
        }
        let cloud = wait(py, b.build())?;
        Ok(PyClassInitializer::from(Cloud { cloud }).add_subclass(LocalCloud {}))
    }
}

/// The AWS backend (built with the `aws` feature): credentials and region from the standard
/// AWS chain, or given here; `endpoint_url` talks to any AWS-compatible endpoint (moto).
#[pyclass(frozen, extends = Cloud, module = "mvi")]
#[derive(Debug)]
pub struct AwsCloud {}

#[pymethods]
impl AwsCloud {
    #[new]
    #[pyo3(signature = (*, region=None, endpoint_url=None, profile=None, access_key_id=None, secret_access_key=None, force_path_style=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        region: Option<String>,
        endpoint_url: Option<String>,
        profile: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        force_path_style: Option<bool>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cloud = aws(
            py,
            region,
            endpoint_url,
            profile,
            access_key_id,
            secret_access_key,
            force_path_style,
        )?;
        Ok(PyClassInitializer::from(Cloud { cloud }).add_subclass(AwsCloud {}))
    }
}

#[cfg(feature = "aws")]
#[allow(clippy::too_many_arguments)]
fn aws(
    py: Python<'_>,
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    force_path_style: Option<bool>,
) -> PyResult<mvi_core::Cloud> {
    let mut b = mvi_aws::AwsCloud::from_env();
    if let Some(r) = region {
        b = b.region(r);
    }
    if let Some(u) = endpoint_url {
        b = b.endpoint_url(u);
    }
    if let Some(p) = profile {
        b = b.profile(p);
    }
    match (access_key_id, secret_access_key) {
        (Some(a), Some(s)) => b = b.credentials(a, s),
        (None, None) => {}
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "give both access_key_id and secret_access_key, or neither",
            ));
        }
    }
    if let Some(f) = force_path_style {
        b = b.force_path_style(f);
    }
    wait(py, b.build())
}

#[cfg(not(feature = "aws"))]
#[allow(clippy::too_many_arguments)]
fn aws(
    _py: Python<'_>,
    _region: Option<String>,
    _endpoint_url: Option<String>,
    _profile: Option<String>,
    _access_key_id: Option<String>,
    _secret_access_key: Option<String>,
    _force_path_style: Option<bool>,
) -> PyResult<mvi_core::Cloud> {
    Err(to_py(mvi_core::Error::new(
        mvi_core::ErrorKind::Unsupported,
        mvi_core::Service::Backend,
        "open",
        "this build of the mvi package has no AWS backend (build it with the cargo feature `aws`)",
    )))
}
