//! Access keys of the local endpoints: who signed a request, and what its policy allows.
//!
//! Keys are shaped like AWS's (an `AKIA…` id of 20 characters and a 40-character secret) so
//! every SDK and tool accepts them, and are drawn from the operating system's randomness,
//! never from the simulator's seed: a seeded cloud is reproducible, its credentials are not
//! guessable. They live in memory, for as long as the cloud is open.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use mvi_core::SecretString;
use mvi_core::access::Policy;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::sigv4::SigningSecret;

/// An access key: the id a request names and the secret it is signed with.
#[derive(Clone)]
pub struct AccessKey {
    /// The access key id (`AKIA` and 16 more characters).
    pub id: String,
    /// The secret access key.
    pub secret: SecretString,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Who holds a key: a name for messages and audit, and the policy the endpoints enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The holder's name (`admin`, a container service's name).
    pub name: String,
    /// What its requests may do.
    pub policy: Policy,
}

/// A key as the endpoints look it up.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) secret: Arc<SigningSecret>,
    pub(crate) principal: Arc<Principal>,
}

/// The access keys the endpoints accept.
#[derive(Debug, Default)]
pub struct AccessKeys {
    keys: RwLock<HashMap<String, Issued>>,
}

impl AccessKeys {
    /// Issues a new key for `principal`, limited to `policy`.
    pub fn issue(&self, principal: impl Into<String>, policy: Policy) -> AccessKey {
        let key = random_key();
        self.insert(&key, principal.into(), policy);
        key
    }

    /// Accepts a key chosen by the caller (fixed admin credentials for a tool's config).
    pub fn insert(&self, key: &AccessKey, principal: String, policy: Policy) {
        let issued = Issued {
            secret: Arc::new(SigningSecret::new(key.secret.clone())),
            principal: Arc::new(Principal {
                name: principal,
                policy,
            }),
        };
        self.write().insert(key.id.clone(), issued);
    }

    /// Stops accepting the key `id`; whether it was known.
    pub fn revoke(&self, id: &str) -> bool {
        self.write().remove(id).is_some()
    }

    /// The ids of the keys accepted for `principal`, sorted.
    pub fn ids_of(&self, principal: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, k)| k.principal.name == principal)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The holder of key `id`, if it is accepted.
    pub fn principal(&self, id: &str) -> Option<Arc<Principal>> {
        self.lookup(id).map(|k| k.principal)
    }

    pub(crate) fn lookup(&self, id: &str) -> Option<Issued> {
        self.read().get(id).cloned()
    }

    /// Whether the key `id` is accepted.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Issued>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Issued>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A fresh key from the thread's CSPRNG (seeded by the operating system).
fn random_key() -> AccessKey {
    let mut rng = rand::rng();
    // Ids are upper-case base32-like, as AWS's; secrets mix cases and digits.
    const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = (0..16)
        .map(|_| ID_CHARS[rng.random_range(0..ID_CHARS.len())] as char)
        .collect();
    let secret: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    AccessKey {
        id: format!("AKIA{id}"),
        secret: SecretString::new(secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_aws_shaped_unique_and_revocable() {
        let keys = AccessKeys::default();
        let a = keys.issue("admin", Policy::admin());
        let b = keys.issue("web", Policy::new());
        assert_eq!(a.id.len(), 20);
        assert!(a.id.starts_with("AKIA"));
        assert_eq!(a.secret.expose().len(), 40);
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret.expose(), b.secret.expose());
        assert_eq!(
            keys.principal(&b.id).map(|p| p.name.clone()).as_deref(),
            Some("web")
        );
        assert!(keys.revoke(&b.id));
        assert!(keys.principal(&b.id).is_none());
        assert!(!keys.revoke(&b.id));
        assert!(!format!("{a:?}").contains(a.secret.expose()));
    }
}
