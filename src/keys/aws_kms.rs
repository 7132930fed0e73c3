//! AWS KMS as a key provider: `GenerateDataKey` and `Decrypt` through the AWS SDK.

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use futures_util::future::BoxFuture;
use zeroize::Zeroizing;

use super::provider::{GeneratedKey, KeyProvider, OperationNames, ProviderError, ProviderErrorKind, UnwrappedKey};

const PROVIDER: &str = "aws-kms";
const GENERATE: &str = "GenerateDataKey";
const DECRYPT: &str = "Decrypt";

/// Where the KMS client connects.
#[derive(Debug, Clone, Default)]
pub struct AwsKmsSettings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

pub struct AwsKms {
    client: aws_sdk_kms::Client,
}

impl AwsKms {
    /// Builds the KMS client from the standard AWS credential chain (environment, profile,
    /// web identity for IRSA, instance metadata), with optional endpoint and region.
    pub async fn new(settings: &AwsKmsSettings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        Self {
            client: aws_sdk_kms::Client::new(&loader.load().await),
        }
    }

    async fn generate_key(&self, key_name: &str) -> Result<GeneratedKey, ProviderError> {
        let output = self
            .client
            .generate_data_key()
            .key_id(key_name)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|error| kms_error(GENERATE, &error))?;
        let plaintext = Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default());
        let wrapped = output
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| invalid(GENERATE, "the answer has no ciphertext blob"))?;
        Ok(GeneratedKey {
            plaintext,
            wrapped,
            key_id: output.key_id.unwrap_or_else(|| key_name.to_owned()),
        })
    }

    async fn unwrap_key(&self, expected_key: Option<&str>, wrapped: &[u8]) -> Result<UnwrappedKey, ProviderError> {
        let output = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped))
            .set_key_id(expected_key.map(str::to_owned))
            .send()
            .await
            .map_err(|error| {
                let error = kms_error(DECRYPT, &error);
                // Asked to unwrap under a named key, KMS answers a blob under another key
                // with IncorrectKeyException, or AccessDenied when the blob's key is one these
                // credentials may not use: either way the key is not the namespace's to read.
                // A real permissions problem on the namespace's own key still fails closed
                // where it matters, in GenerateDataKey.
                match error.kind {
                    ProviderErrorKind::Denied if expected_key.is_some() => {
                        tracing::warn!(%error, "KMS refused to unwrap a data key under this namespace's key");
                        ProviderError {
                            kind: ProviderErrorKind::OtherKey,
                            ..error
                        }
                    }
                    _ => error,
                }
            })?;
        Ok(UnwrappedKey {
            plaintext: Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default()),
            key_id: output.key_id.unwrap_or_else(|| PROVIDER.to_owned()),
        })
    }
}

impl KeyProvider for AwsKms {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn operations(&self) -> OperationNames {
        OperationNames {
            generate: GENERATE,
            unwrap: DECRYPT,
        }
    }

    fn generate<'a>(&'a self, key_name: &'a str) -> BoxFuture<'a, Result<GeneratedKey, ProviderError>> {
        Box::pin(self.generate_key(key_name))
    }

    fn unwrap<'a>(
        &'a self,
        expected_key: Option<&'a str>,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<UnwrappedKey, ProviderError>> {
        Box::pin(self.unwrap_key(expected_key, wrapped))
    }
}

fn invalid(operation: &'static str, message: &str) -> ProviderError {
    ProviderError {
        provider: PROVIDER,
        operation,
        kind: ProviderErrorKind::Invalid,
        message: message.to_owned(),
    }
}

/// Sorts a KMS failure by what the caller can do about it.
fn kms_error<E, R>(operation: &'static str, error: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (kind, message) = match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("unknown");
            let message = format!("{code}: {}", inner.message().unwrap_or(""));
            let kind = match code {
                "AccessDeniedException" | "UnrecognizedClientException" | "InvalidSignatureException" => {
                    ProviderErrorKind::Denied
                }
                "ThrottlingException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
                | "LimitExceededException" => ProviderErrorKind::Unavailable,
                "NotFoundException" | "DisabledException" => ProviderErrorKind::NotFound,
                "IncorrectKeyException" => ProviderErrorKind::OtherKey,
                _ => ProviderErrorKind::Invalid,
            };
            (kind, message)
        }
        other => (ProviderErrorKind::Unavailable, DisplayErrorContext(other).to_string()),
    };
    ProviderError {
        provider: PROVIDER,
        operation,
        kind,
        message,
    }
}
