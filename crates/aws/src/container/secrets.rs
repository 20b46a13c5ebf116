//! Secrets in SSM Parameter Store: decrypted with KMS, stored as SecureStrings, referred to by
//! the task definitions.

#[allow(clippy::wildcard_imports)]
use super::*;

impl EcsContainers {
    /// Decrypts every secret of `c` with KMS (empty encryption context, as the local backend
    /// does), before anything changes: a secret that does not decrypt fails the call. When a
    /// variable is named twice the later secret wins, as locally.
    pub(super) async fn decrypt_secrets(&self, op: Op, c: &ContainerSpec) -> Result<Vec<Plain>> {
        let mut plain: Vec<Plain> = Vec::with_capacity(c.secrets.len());
        for s in &c.secrets {
            let out = self
                .kms
                .decrypt()
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(s.ciphertext.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    let e = map(op, &s.env, e);
                    op.err(
                        e.kind(),
                        &s.env,
                        format!("cannot decrypt the secret: {}", e.message()),
                    )
                })?;
            let text = SecretBytes::new(
                out.plaintext
                    .map(aws_sdk_kms::primitives::Blob::into_inner)
                    .unwrap_or_default(),
            );
            if std::str::from_utf8(text.expose()).is_err() {
                return Err(op.invalid(&s.env, "the secret's plaintext is not UTF-8 text"));
            }
            if text.is_empty() {
                return Err(op.invalid(&s.env, "the secret's plaintext is empty"));
            }
            plain.retain(|p| p.env != s.env);
            plain.push(Plain {
                env: s.env.clone(),
                text,
                key: out.key_id,
            });
        }
        Ok(plain)
    }

    /// The SSM path holding the secrets of `kind` `name` (and of one run of a task).
    pub(super) fn secret_path(&self, kind: Kind, name: &str, run: Option<&str>) -> String {
        let mut path = format!("/mvi/{}/{}/{name}", self.cluster, kind.as_str());
        if let Some(run) = run {
            path.push('/');
            path.push_str(run);
        }
        path
    }

    /// Stores each secret as a `SecureString` parameter under `path` (encrypted with the key
    /// of its ciphertext, else SSM's own), replacing what was there, and answers the ECS
    /// secrets referring to them, in the spec's order.
    pub(super) async fn put_secrets(
        &self,
        op: Op,
        resource: &str,
        path: &str,
        plain: &[Plain],
    ) -> Result<Vec<EcsSecret>> {
        if plain.is_empty() {
            return Ok(Vec::new());
        }
        let account = self.account(op).await?;
        let mut refs = Vec::with_capacity(plain.len());
        for p in plain {
            let name = format!("{path}/{}", param_segment(&p.env));
            // Checked when decrypted; the SDK takes the value as text.
            let value = std::str::from_utf8(p.text.expose())
                .map_err(|_| op.invalid(&p.env, "the secret's plaintext is not UTF-8 text"))?;
            self.ssm
                .put_parameter()
                .name(&name)
                .description(format!(
                    "mvi: a secret of {resource} in ECS cluster {}",
                    self.cluster
                ))
                .value(value)
                .r#type(ParameterType::SecureString)
                .key_id(p.key.as_deref().unwrap_or(SSM_DEFAULT_KEY))
                .overwrite(true)
                .send()
                .await
                .map_err(|e| {
                    // Only the error's code and kind: a service message could quote the
                    // value.
                    use aws_sdk_ssm::error::ProvideErrorMetadata;
                    let code = e.code().unwrap_or("no error code").to_owned();
                    let kind = map(op, &p.env, e).kind();
                    op.err(
                        kind,
                        &p.env,
                        format!("cannot store the secret in SSM Parameter Store: {code}"),
                    )
                })?;
            let arn = format!(
                "arn:{}:ssm:{}:{account}:parameter{name}",
                self.partition(),
                self.region
            );
            refs.push(
                EcsSecret::builder()
                    .name(&p.env)
                    .value_from(arn)
                    .build()
                    .map_err(|e| op.internal(resource, e))?,
            );
        }
        Ok(refs)
    }

    /// Deletes the parameters under `path` that `keep` (ECS secrets) does not refer to. Best
    /// effort: what fails is logged and left.
    pub(super) async fn prune_secrets(
        &self,
        op: Op,
        resource: &str,
        path: &str,
        keep: &[EcsSecret],
    ) {
        use aws_sdk_ssm::types::ParameterStringFilter;
        let kept: Vec<&str> = keep
            .iter()
            .map(|s| s.value_from())
            .filter_map(|arn| arn.split_once(":parameter").map(|(_, n)| n))
            .collect();
        let filter = match ParameterStringFilter::builder()
            .key("Path")
            .option("Recursive")
            .values(path)
            .build()
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot list the secrets of {resource}: {e}");
                return;
            }
        };
        // DescribeParameters gives names only: no value leaves SSM to be deleted.
        let mut names = Vec::new();
        let mut token = None;
        loop {
            match self
                .ssm
                .describe_parameters()
                .parameter_filters(filter.clone())
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => {
                    names.extend(
                        out.parameters()
                            .iter()
                            .filter_map(|p| p.name())
                            .filter(|n| !kept.contains(n))
                            .map(str::to_owned),
                    );
                    token = out.next_token;
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot list the secrets of {resource}: {}",
                        map(op, resource, e)
                    );
                    return;
                }
            }
        }
        for chunk in names.chunks(10) {
            if let Err(e) = self
                .ssm
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
            {
                tracing::warn!(
                    "cannot delete the parameters {chunk:?}: {}",
                    map(op, resource, e)
                );
            }
        }
    }
}

/// A decrypted secret, held only until it is stored in SSM (no `Debug`: it is never shown).
pub(super) struct Plain {
    pub(super) env: String,
    /// UTF-8, not empty.
    pub(super) text: SecretBytes,
    /// The KMS key that decrypted it (an ARN), if KMS named it.
    pub(super) key: Option<String>,
}

/// The last part of a secret's SSM parameter name: the variable itself when it is made of
/// letters, digits and underscores (as variables usually are), else `-` and a hash of it
/// (SSM names allow fewer characters than variables; `-` starts no plain name).
pub(super) fn param_segment(env: &str) -> String {
    if (1..=128).contains(&env.len()) && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return env.to_owned();
    }
    use sha2::Digest;
    format!(
        "-{}",
        &hex::encode(sha2::Sha256::digest(env.as_bytes()))[..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names() {
        assert_eq!(param_segment("API_TOKEN"), "API_TOKEN");
        let odd = param_segment("my token");
        assert!(odd.starts_with('-') && odd.len() == 33, "{odd}");
        assert_ne!(odd, param_segment("my-token"));
    }
}
