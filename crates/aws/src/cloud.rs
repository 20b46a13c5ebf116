//! Building a [`Cloud`] on AWS.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use mvi_core::{Cloud, Result};

/// The AWS backend's entry point.
#[derive(Debug, Clone, Copy)]
pub struct AwsCloud;

impl AwsCloud {
    /// A builder that starts from the usual AWS environment (variables, profile files,
    /// instance metadata); its setters override what the environment says.
    pub fn from_env() -> AwsCloudBuilder {
        AwsCloudBuilder::default()
    }
}

/// Settings of an AWS [`Cloud`]; see [`AwsCloud::from_env`].
#[derive(Debug, Clone, Default)]
pub struct AwsCloudBuilder {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<(String, String)>,
    force_path_style: Option<bool>,
}

impl AwsCloudBuilder {
    /// The region (`eu-west-1`); else `AWS_REGION` or the profile's.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The named profile of `~/.aws/config` and `~/.aws/credentials`; else `AWS_PROFILE` or
    /// `default`.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Sends every request to this endpoint (moto, MinIO, LocalStack) instead of AWS's.
    /// Implies path-style S3 addressing unless [`Self::force_path_style`] says otherwise.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// A static access key and secret, instead of the environment's credential chain.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// Addresses S3 buckets by path (`endpoint/bucket/key`) rather than by host name.
    pub fn force_path_style(mut self, on: bool) -> Self {
        self.force_path_style = Some(on);
        self
    }

    /// Loads the configuration and builds the services of the enabled features.
    pub async fn build(self) -> Result<Cloud> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((key, secret)) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "mvi-static",
            ));
        }
        let config = loader.load().await;
        #[allow(unused_mut)]
        let mut cloud = Cloud::new("aws");
        #[cfg(feature = "s3")]
        {
            let path_style = self.force_path_style.unwrap_or(self.endpoint_url.is_some());
            let s3 = aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(path_style)
                .build();
            let blob = crate::blob::S3Blob::new(aws_sdk_s3::Client::from_conf(s3));
            cloud = cloud.with_blob(Arc::new(blob));
        }
        #[cfg(feature = "dynamodb")]
        {
            let kv = crate::kv::DynamoKv::new(aws_sdk_dynamodb::Client::new(&config));
            cloud = cloud.with_kv(Arc::new(kv));
        }
        // The other services take the shared configuration as it is. Their SDK clients retry
        // throttling and transient errors with backoff (the SDK's standard retry mode).
        #[cfg(feature = "kms")]
        {
            cloud = cloud.with_crypto(Arc::new(crate::crypto::KmsCrypto::new(&config)));
        }
        #[cfg(feature = "logs")]
        {
            cloud = cloud.with_logs(Arc::new(crate::log::CloudWatchLogs::new(&config)));
        }
        #[cfg(feature = "cloudwatch")]
        {
            cloud = cloud.with_metrics(Arc::new(crate::metric::CloudWatchMetrics::new(&config)));
        }
        #[cfg(feature = "ecr")]
        {
            cloud = cloud.with_images(Arc::new(crate::image::EcrImages::new(&config)));
        }
        #[cfg(feature = "ecs")]
        {
            cloud = cloud.with_containers(Arc::new(crate::container::EcsContainers::new(&config)));
        }
        #[cfg(feature = "elbv2")]
        {
            cloud = cloud.with_load_balancers(Arc::new(crate::lb::ElbLoadBalancers::new(&config)));
        }
        #[cfg(feature = "rds")]
        {
            cloud = cloud.with_databases(Arc::new(crate::database::RdsDatabases::new(&config)));
        }
        #[cfg(feature = "ec2")]
        {
            cloud = cloud
                .with_vms(Arc::new(crate::vm::Ec2Vms::new(&config)))
                .with_networks(Arc::new(crate::vpc::Ec2Networks::new(&config)));
        }
        Ok(cloud)
    }
}
