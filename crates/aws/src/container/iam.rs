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
