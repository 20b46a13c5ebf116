//! JSON documents in SSM Parameter Store: what ECS and Application Auto Scaling have no
//! place for (a service's deployments, a scaler's spec as it was put), one `String`
//! parameter each (at most 4 KB, SSM's standard tier).

#[allow(clippy::wildcard_imports)]
use super::*;

use serde::Serialize;
use serde::de::DeserializeOwned;

impl EcsContainers {
    /// The document at `path`, if one was written; `what` names it in errors.
    pub(super) async fn get_document<T: DeserializeOwned>(
        &self,
        op: Op,
        resource: &str,
        path: &str,
        what: &str,
    ) -> Result<Option<T>> {
        match self.ssm.get_parameter().name(path).send().await {
            Ok(out) => {
                let text = out.parameter().and_then(|p| p.value()).unwrap_or_default();
                serde_json::from_str(text)
                    .map(Some)
                    .map_err(|e| op.internal(resource, format!("{what} is not readable: {e}")))
            }
            Err(e) => {
                let e = map(op, resource, e);
                if e.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Writes `doc` at `path`, replacing what was there.
    pub(super) async fn put_document<T: Serialize>(
        &self,
        op: Op,
        resource: &str,
        path: &str,
        description: &str,
        doc: &T,
    ) -> Result<()> {
        let text = serde_json::to_string(doc).map_err(|e| op.internal(resource, e))?;
        self.ssm
            .put_parameter()
            .name(path)
            .description(description)
            .value(text)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(())
    }

    /// Deletes the document at `path`; one already gone is no error.
    pub(super) async fn delete_document(&self, op: Op, resource: &str, path: &str) -> Result<()> {
        match self.ssm.delete_parameter().name(path).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map(op, resource, e) {
                e if e.kind() == ErrorKind::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }
}
