//! The IAM roles and the account ECS and Scheduler act as.

#[allow(clippy::wildcard_imports)]
use super::*;

impl EcsContainers {
    pub(super) fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    pub(super) fn registry_host(&self, account: &str) -> String {
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("{account}.dkr.ecr.{}.{suffix}", self.region)
    }

    /// The account id (ECR's registry id), read once.
    pub(super) async fn account(&self, op: Op) -> Result<String> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .ecr
                    .describe_registry()
                    .send()
                    .await
                    .map_err(|e| map(op, "registry", e))?;
                out.registry_id()
                    .map(str::to_owned)
                    .ok_or_else(|| op.internal("registry", "DescribeRegistry answered no id"))
            })
            .await
            .cloned()
    }

    pub(super) async fn execution_role(&self, op: Op) -> Result<String> {
        if let Some(arn) = &self.execution_role {
            return Ok(arn.clone());
        }
        let account = self.account(op).await?;
        Ok(format!(
            "arn:{}:iam::{account}:role/{EXECUTION_ROLE}",
            self.partition()
        ))
    }

    pub(super) async fn scheduler_role(&self, op: Op) -> Result<String> {
        if let Some(arn) = &self.scheduler_role {
            return Ok(arn.clone());
        }
        let account = self.account(op).await?;
        Ok(format!(
            "arn:{}:iam::{account}:role/{SCHEDULER_ROLE}",
            self.partition()
        ))
    }
}

/// Who may assume a task role: ECS tasks.
const TASK_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
/// The name of a task role's inline policy.
pub(super) const GRANTS_POLICY: &str = "mvi-grants";

/// The task role of a task definition family: `<family>-task`, or, past IAM's 64
/// characters, the family's start and a hash of the whole.
pub(super) fn task_role_name(family: &str) -> String {
    let name = format!("{family}-task");
    if name.len() <= 64 {
        return name;
    }
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(family.as_bytes())[..8]);
    format!("{}-{hash}-task", &family[..42.min(family.len())])
}

impl EcsContainers {
    /// The policy of a task role with exactly `grants`, in this account and region.
    pub(super) async fn grants_policy(
        &self,
        op: Op,
        grants: &[mvi_core::access::Grant],
    ) -> Result<mvi_core::access::Policy> {
        let account = self.account(op).await?;
        let mut scope = mvi_core::access::Account::new(&self.region, &account);
        scope.partition = self.partition().to_owned();
        Ok(mvi_core::access::Policy::of_grants(&scope, grants))
    }

    /// The role the tasks of `family` run as, with exactly `grants`: created on first use,
    /// its inline policy rewritten to the grants of every new revision.
    pub(super) async fn task_role(
        &self,
        op: Op,
        resource: &str,
        family: &str,
        grants: &[mvi_core::access::Grant],
    ) -> Result<String> {
        let name = task_role_name(family);
        let account = self.account(op).await?;
        let document = self
            .grants_policy(op, grants)
            .await?
            .to_document()
            .to_string();
        let created = self
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(TASK_TRUST)
            .description(format!("mvi: what the tasks of {family} may do"))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.role().map(|r| r.arn().to_owned()),
            Err(e) => {
                let e = map(op, resource, e);
                if e.kind() != ErrorKind::AlreadyExists {
                    return Err(e);
                }
                None
            }
        };
        self.iam
            .put_role_policy()
            .role_name(&name)
            .policy_name(GRANTS_POLICY)
            .policy_document(document)
            .send()
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(arn.unwrap_or_else(|| format!("arn:{}:iam::{account}:role/{name}", self.partition())))
    }

    /// Deletes the task role of `family`, if there is one. Best effort: what fails is
    /// logged and left (a role is free, and the next create reuses it).
    pub(super) async fn drop_task_role(&self, family: &str) {
        let name = task_role_name(family);
        let policy = self
            .iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name(GRANTS_POLICY)
            .send()
            .await;
        if policy.is_err() {
            // No policy: no role of ours either (or IAM is unreachable; then so is the role).
            return;
        }
        if let Err(e) = self.iam.delete_role().role_name(&name).send().await {
            tracing::warn!("cannot delete the task role {name}: {e}");
        }
    }
}
