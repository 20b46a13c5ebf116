//! The `Cloud` handle: every service of one backend, cheap to clone.

use std::sync::Arc;

use crate::blob::Blob;
use crate::container::Containers;
use crate::crypto::Crypto;
use crate::database::Databases;
use crate::error::{Error, ErrorKind, Result, Service};
use crate::image::Images;
use crate::kv::Kv;
use crate::layer::{Layer, Layered};
use crate::lb::LoadBalancers;
use crate::log::Logs;
use crate::metric::Metrics;
use crate::vm::Vms;
use crate::vpc::Networks;

macro_rules! cloud {
    ($($field:ident: $trait:ident = $service:ident, $doc:literal;)*) => {
        /// Every service of one backend. Cloning is cheap (one `Arc` per service).
        ///
        /// A backend may leave a service out (the AWS backend built without its cargo feature,
        /// or the local backend before it implements it); its accessor then returns an
        /// [`ErrorKind::Unsupported`] error naming the service, instead of failing later.
        #[derive(Debug, Clone, Default)]
        pub struct Cloud {
            backend: &'static str,
            $($field: Option<Arc<dyn $trait>>,)*
        }

        impl Cloud {
            /// An empty handle for `backend` (`"local"`, `"aws"`); add services with the
            /// `with_*` methods.
            pub fn new(backend: &'static str) -> Self {
                Cloud { backend, ..Default::default() }
            }

            /// The backend's name.
            pub fn backend(&self) -> &'static str {
                self.backend
            }

            /// Wraps every service of this cloud in `layer` (fault injection, tracing,
            /// counting): the layer runs before each operation and may delay or fail it.
            pub fn layer(mut self, layer: Arc<dyn Layer>) -> Cloud {
                $(
                    self.$field = self.$field.map(|service| {
                        Arc::new(Layered::new(service, layer.clone())) as Arc<dyn $trait>
                    });
                )*
                self
            }

            $(
                #[doc = concat!("The ", $doc, " service.")]
                pub fn $field(&self) -> Result<&Arc<dyn $trait>> {
                    self.$field.as_ref().ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unsupported,
                            Service::$service,
                            stringify!($field),
                            format!("the {} backend does not provide the {} service", self.backend, $doc),
                        )
                    })
                }

                cloud_with!($field, $trait, $doc);
            )*
        }
    };
}

// `with_<service>` setters, spelled out since declarative macros cannot build identifiers.
macro_rules! cloud_with {
    (blob, $t:ident, $doc:literal) => {
        setter!(with_blob, blob, $t, $doc);
    };
    (kv, $t:ident, $doc:literal) => {
        setter!(with_kv, kv, $t, $doc);
    };
    (crypto, $t:ident, $doc:literal) => {
        setter!(with_crypto, crypto, $t, $doc);
    };
    (logs, $t:ident, $doc:literal) => {
        setter!(with_logs, logs, $t, $doc);
    };
    (metrics, $t:ident, $doc:literal) => {
        setter!(with_metrics, metrics, $t, $doc);
    };
    (images, $t:ident, $doc:literal) => {
        setter!(with_images, images, $t, $doc);
    };
    (containers, $t:ident, $doc:literal) => {
        setter!(with_containers, containers, $t, $doc);
    };
    (load_balancers, $t:ident, $doc:literal) => {
        setter!(with_load_balancers, load_balancers, $t, $doc);
    };
    (databases, $t:ident, $doc:literal) => {
        setter!(with_databases, databases, $t, $doc);
    };
    (vms, $t:ident, $doc:literal) => {
        setter!(with_vms, vms, $t, $doc);
    };
    (networks, $t:ident, $doc:literal) => {
        setter!(with_networks, networks, $t, $doc);
    };
}

macro_rules! setter {
    ($name:ident, $field:ident, $t:ident, $doc:literal) => {
        #[doc = concat!("Sets the ", $doc, " service.")]
        pub fn $name(mut self, service: Arc<dyn $t>) -> Self {
            self.$field = Some(service);
            self
        }
    };
}

cloud! {
    blob: Blob = Blob, "Blob";
    kv: Kv = Kv, "KV";
    crypto: Crypto = Crypto, "Crypto";
    logs: Logs = Log, "Log";
    metrics: Metrics = Metric, "Metric";
    images: Images = Image, "Image";
    containers: Containers = Container, "Container";
    load_balancers: LoadBalancers = LoadBalancer, "Load Balancer";
    databases: Databases = Database, "Database";
    vms: Vms = Vm, "VM";
    networks: Networks = Vpc, "VPC";
}
