//! Fair shares of the endpoints between the apps that call them: each access key may have at
//! most [`MAX_IN_FLIGHT`] requests in progress at once. A container is untrusted input; one
//! that opens many slow requests (an upload that never finishes, a flood of calls) is answered
//! `SlowDown` (S3) or `ThrottlingException` (the JSON protocols) beyond its share, which AWS
//! SDKs retry with backoff, while every other key is served as before.
//!
//! The key is read from the request's credential (the SigV4 `Authorization` header or a
//! presigned URL's `X-Amz-Credential`, SigV2's `AWSAccessKeyId`) before anything else is
//! done; only keys the endpoints issued are counted, so made-up ids cannot grow the table (they
//! are refused by the signature check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::Request;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::keys::AccessKeys;

/// Requests one access key may have in progress at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The requests in progress, per access key.
pub(crate) struct InFlight {
    keys: Arc<AccessKeys>,
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlight {
    pub(crate) fn new(keys: Arc<AccessKeys>) -> Self {
        InFlight {
            keys,
            per_key: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request: a permit held while it is served (`None` for a request that names no
    /// key of this endpoint: the signature check refuses it), or `Err` when its key already
    /// has [`MAX_IN_FLIGHT`] requests in progress.
    pub(crate) fn admit<B>(&self, req: &Request<B>) -> Result<Option<OwnedSemaphorePermit>, Busy> {
        let Some(id) = key_id(req) else {
            return Ok(None);
        };
        if !self.keys.contains(id) {
            return Ok(None);
        }
        let slots = {
            let mut map = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(id) {
                Some(slots) => slots.clone(),
                None => {
                    // Revoked keys' counters go when a new key is first seen.
                    map.retain(|k, _| self.keys.contains(k));
                    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
                    map.insert(id.to_owned(), slots.clone());
                    slots
                }
            }
        };
        slots
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| Busy { key: id.to_owned() })
    }
}

/// A key that has used its share.
#[derive(Debug)]
pub(crate) struct Busy {
    pub(crate) key: String,
}

impl Busy {
    pub(crate) fn message(&self) -> String {
        format!(
            "access key {} has {MAX_IN_FLIGHT} requests in progress, its share of this \
             endpoint; retry when one finishes",
            self.key
        )
    }
}

/// The access key id a request names.
fn key_id<B>(req: &Request<B>) -> Option<&str> {
    if let Some(auth) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") {
            let credential = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))?;
            return credential.split('/').next();
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next();
        }
        return None;
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        match k {
            // AKID%2FDATE%2FREGION%2F...: the id is what comes before the first slash.
            "X-Amz-Credential" => v.split("%2F").next().and_then(|id| id.split('/').next()),
            "AWSAccessKeyId" => Some(v),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).expect("a request")
    }

    #[test]
    fn the_key_is_read_from_every_kind_of_credential() {
        let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIAONE/20261207/us-east-1/s3/aws4_request, \
                     SignedHeaders=host, Signature=00";
        assert_eq!(key_id(&req(Some(sigv4), "/b/k")), Some("AKIAONE"));
        assert_eq!(
            key_id(&req(Some("AWS AKIATWO:c2ln"), "/b/k")),
            Some("AKIATWO")
        );
        assert_eq!(
            key_id(&req(
                None,
                "/b/k?X-Amz-Algorithm=x&X-Amz-Credential=AKIA3%2F20261207%2Fus-east-1"
            )),
            Some("AKIA3")
        );
        assert_eq!(
            key_id(&req(None, "/b/k?AWSAccessKeyId=AKIA4&Expires=1")),
            Some("AKIA4")
        );
        assert_eq!(key_id(&req(None, "/b/k")), None);
    }

    #[test]
    fn a_key_gets_its_share_and_no_more() {
        let keys = Arc::new(AccessKeys::default());
        let a = keys.issue("a", mvi_core::access::Policy::admin());
        let b = keys.issue("b", mvi_core::access::Policy::admin());
        let flight = InFlight::new(keys.clone());
        let of = |id: &str| {
            req(
                Some(&format!(
                    "AWS4-HMAC-SHA256 Credential={id}/d/r/s/aws4_request, SignedHeaders=host, \
                     Signature=00"
                )),
                "/",
            )
        };
        let held: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| flight.admit(&of(&a.id)).expect("within the share"))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(flight.admit(&of(&a.id)).is_err(), "past the share");
        assert!(flight.admit(&of(&b.id)).expect("another key").is_some());
        assert!(flight.admit(&of("AKIAUNKNOWN")).expect("unknown").is_none());
        drop(held);
        assert!(flight.admit(&of(&a.id)).expect("again").is_some());
    }
}
