//! Where tasks run: the spec's subnets and security groups, or the default VPC's, and the
//! target group a service registers with.

#[allow(clippy::wildcard_imports)]
use super::*;

impl EcsContainers {
    /// The awsvpc configuration of `subnets` and `groups`, each defaulting to the default
    /// VPC's default subnets and the VPC's default security group. Security groups are always
    /// named, as ECS would choose them: moto answers a configuration without them with an
    /// HTTP 500 (a KeyError in its RunTask).
    pub(super) async fn network(
        &self,
        op: Op,
        resource: &str,
        subnets: &[String],
        groups: &[String],
    ) -> Result<NetworkConfiguration> {
        use aws_sdk_ec2::types::Filter;
        let mut request = self.ec2.describe_subnets();
        if subnets.is_empty() {
            request = request.filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            );
        } else {
            request = request.set_subnet_ids(Some(subnets.to_vec()));
        }
        let found = request
            .send()
            .await
            .map_err(|e| map(op, resource, e))?
            .subnets
            .unwrap_or_default();
        if found.is_empty() {
            return Err(op.precondition(
                resource,
                "the account has no default VPC in this region: name the subnets",
            ));
        }
        let vpcs: std::collections::BTreeSet<&str> =
            found.iter().filter_map(|s| s.vpc_id()).collect();
        let vpc = match vpcs.len() {
            1 => vpcs.into_iter().next().unwrap_or_default().to_owned(),
            _ => {
                return Err(op.invalid(
                    resource,
                    format!(
                        "the subnets are in {} VPCs; a task's are in one",
                        vpcs.len()
                    ),
                ));
            }
        };
        let public = found
            .iter()
            .all(|s| s.map_public_ip_on_launch() == Some(true));
        let subnet_ids: Vec<String> = found
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect();
        let group_ids = if groups.is_empty() {
            let out = self
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values("default")
                        .build(),
                )
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            let id = out
                .security_groups()
                .iter()
                .find_map(|g| g.group_id())
                .ok_or_else(|| {
                    op.precondition(
                        resource,
                        format!("VPC {vpc} has no default security group: name the groups"),
                    )
                })?;
            vec![id.to_owned()]
        } else {
            // Named groups must exist (NotFound naming the missing one), before ECS is
            // asked for anything.
            let out = self
                .ec2
                .describe_security_groups()
                .set_group_ids(Some(groups.to_vec()))
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            let known: Vec<&str> = out
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .collect();
            if let Some(missing) = groups.iter().find(|g| !known.contains(&g.as_str())) {
                return Err(op.not_found(missing, "no such security group"));
            }
            groups.to_vec()
        };
        let config = AwsVpcConfiguration::builder()
            .set_subnets(Some(subnet_ids))
            .set_security_groups(Some(group_ids))
            .assign_public_ip(if public {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| op.internal(resource, e))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(config)
            .build())
    }

    /// The ARN of the target group `group` (a name, or already an ARN).
    pub(super) async fn target_group_arn(
        &self,
        op: Op,
        resource: &str,
        group: &str,
    ) -> Result<String> {
        if group.starts_with("arn:") {
            return Ok(group.to_owned());
        }
        #[cfg(feature = "elbv2")]
        {
            let _ = resource;
            let out = self
                .elb
                .describe_target_groups()
                .names(group)
                .send()
                .await
                .map_err(|e| map(op, group, e))?;
            out.target_groups()
                .iter()
                .find_map(|g| g.target_group_arn())
                .map(str::to_owned)
                .ok_or_else(|| op.not_found(group, "no such target group"))
        }
        #[cfg(not(feature = "elbv2"))]
        {
            Err(no_balancers(op, resource))
        }
    }
}
