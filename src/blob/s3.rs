//! Blobs in S3 (MinIO in production; s3s-fs in tests) through aws-sdk-s3.
//! Path-style addressing (MinIO and s3s-fs need it), an optional key prefix,
//! credentials and region from the environment.

use super::{check_key, sha256_hex, BlobError, BlobInfo, BlobStore};
use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

pub struct S3BlobStore {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
}

fn backend<E: ProvideErrorMetadata + std::fmt::Debug>(key: &str, e: SdkError<E>) -> BlobError {
    let detail = match &e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("no message")
        ),
        other => format!("{other:?}"),
    };
    BlobError::Backend(format!("{key}: {detail}"))
}

fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

impl S3BlobStore {
    /// Endpoint from `STRATA_S3_ENDPOINT` (AWS when unset), region from
    /// `AWS_REGION` (us-east-1), keys from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    pub fn from_env(bucket: &str, prefix: &str) -> Result<Self, BlobError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(BlobError::Config(
                "s3:// blob URLs need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        let credentials =
            Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        let region = var("AWS_REGION").unwrap_or_else(|| "us-east-1".into());
        Self::new(
            bucket,
            prefix,
            var("STRATA_S3_ENDPOINT").as_deref(),
            &region,
            credentials,
        )
    }

    pub fn new(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        region: &str,
        credentials: Credentials,
    ) -> Result<Self, BlobError> {
        if bucket.is_empty() {
            return Err(BlobError::Config("an s3:// blob URL names a bucket".into()));
        }
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .force_path_style(true);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3BlobStore {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: endpoint.map(str::to_owned),
        })
    }

    fn object(&self, key: &str) -> Result<String, BlobError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError> {
        let object = self.object(key)?;
        // Servers without conditional writes ignore If-None-Match, so check
        // first as well; two writers racing on one key within that window on
        // such a server could both succeed (snapshot keys are deterministic,
        // so they would write the same state).
        if self.exists(key).await? {
            return Err(BlobError::Exists(key.to_owned()));
        }
        let info = BlobInfo {
            key: key.to_owned(),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match put {
            Ok(_) => Ok(info),
            Err(e) if status_of(&e) == Some(412) => Err(BlobError::Exists(key.to_owned())),
            Err(e) => Err(backend(key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let object = self.object(key)?;
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await;
        match got {
            Ok(output) => Ok(output
                .body
                .collect()
                .await
                .map_err(|e| BlobError::Backend(format!("{key}: {e}")))?
                .into_bytes()
                .to_vec()),
            Err(e) if status_of(&e) == Some(404) => Err(BlobError::NotFound(key.to_owned())),
            Err(e) => Err(backend(key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        if !self.exists(key).await? {
            return Err(BlobError::NotFound(key.to_owned()));
        }
        let object = self.object(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| backend(key, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let object = self.object(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(backend(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let full = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend(prefix, e))?;
            for object in page.contents() {
                if let Some(k) = object.key() {
                    keys.push(k[strip.min(k.len())..].to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The bucket answers (HeadBucket) with these credentials.
    async fn ping(&self) -> Result<(), BlobError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            // A HEAD answer has no body to name the error: say it here.
            Err(e) if status_of(&e) == Some(404) => Err(BlobError::Backend(format!(
                "bucket {} does not exist",
                self.bucket
            ))),
            Err(e) if status_of(&e) == Some(403) => Err(BlobError::Backend(format!(
                "access to bucket {} is denied",
                self.bucket
            ))),
            Err(e) => Err(backend(&self.bucket, e)),
        }
    }

    fn describe(&self) -> String {
        let at = self.endpoint.as_deref().unwrap_or("AWS");
        format!("s3://{}/{} at {at}", self.bucket, self.prefix)
    }
}
