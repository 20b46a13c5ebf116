//! Building a [`Cloud`] on AWS.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
#[cfg(not(feature = "s3"))]
use aws_sdk_dynamodb::config::Credentials;
#[cfg(feature = "s3")]
use aws_sdk_s3::config::Credentials;
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
        Ok(cloud)
    }
}
