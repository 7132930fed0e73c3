//! Data keys above every provider: one generated key reused within strict limits, and each
//! wrapped key unwrapped once, with concurrent misses sharing one provider call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moka::future::Cache;

use super::data_key::DataKey;
use super::provider::{KeyProvider, OperationNames, ProviderError, ProviderErrorKind};

/// Random 96-bit nonces stay safe for at most 2^32 messages under one key.
pub const MAX_PAYLOADS_PER_DATA_KEY: u64 = 1 << 32;

/// When a cached data key must be replaced.
#[derive(Debug, Clone, Copy)]
pub struct DataKeyLimits {
    pub max_age: Duration,
    pub max_payloads: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub limits: DataKeyLimits,
    pub decrypt_cache_ttl: Duration,
    pub decrypt_cache_capacity: u64,
}

/// Counts of provider calls and cache use, for metrics.
#[derive(Debug, Default)]
pub struct ProviderStats {
    pub generate_ok: AtomicU64,
    pub generate_failed: AtomicU64,
    pub unwrap_ok: AtomicU64,
    pub unwrap_failed: AtomicU64,
    /// Unwraps the provider refused because the wrapped key is under another key.
    pub unwrap_other_key: AtomicU64,
    pub encryption_cache_hits: AtomicU64,
    pub encryption_cache_misses: AtomicU64,
    pub decryption_cache_hits: AtomicU64,
    pub decryption_cache_misses: AtomicU64,
}

/// A data key on loan for encryption, with its wrapped form and its use so far.
pub struct LeasedKey {
    pub key: DataKey,
    /// Base64 of the provider's wrapped key, as written to `data_key_encrypted`.
    pub wrapped: String,
    created: Instant,
    payloads: AtomicU64,
    bytes: AtomicU64,
}

impl LeasedKey {
    /// Records what one call encrypted with this key.
    pub fn record_use(&self, payloads: u64, bytes: u64) {
        self.payloads.fetch_add(payloads, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn exhausted(&self, limits: &DataKeyLimits) -> bool {
        self.created.elapsed() >= limits.max_age
            || self.payloads.load(Ordering::Relaxed) >= limits.max_payloads.min(MAX_PAYLOADS_PER_DATA_KEY)
            || self.bytes.load(Ordering::Relaxed) >= limits.max_bytes
    }
}

/// An unwrapped key, or the provider's word that the wrapped key is under another key
/// than the one asked for: remembered too, so ciphertext planted from elsewhere costs
/// one provider call, not one per read.
type Unwrapped = Option<Arc<DataKey>>;

/// One provider's data keys, cached.
pub struct CachedKeys {
    provider: Arc<dyn KeyProvider>,
    settings: CacheSettings,
    encryption: Cache<String, Arc<LeasedKey>>,
    /// By the key the unwrap named (if any) and the wrapped blob: a key unwrapped for one
    /// namespace's key never answers for another's.
    decryption: Cache<(Option<String>, Vec<u8>), Unwrapped>,
    stats: ProviderStats,
}

impl CachedKeys {
    pub fn new(provider: Arc<dyn KeyProvider>, settings: CacheSettings) -> Self {
        let encryption = Cache::builder()
            .time_to_live(settings.limits.max_age)
            .max_capacity(10_000)
            .build();
        let decryption = Cache::builder()
            .time_to_live(settings.decrypt_cache_ttl)
            .max_capacity(settings.decrypt_cache_capacity)
            .build();
        Self {
            provider,
            settings,
            encryption,
            decryption,
            stats: ProviderStats::default(),
        }
    }

    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    pub fn operations(&self) -> OperationNames {
        self.provider.operations()
    }

    pub fn stats(&self) -> &ProviderStats {
        &self.stats
    }

    /// A data key to encrypt with under `key_name`: the cached one while it is within its
    /// limits, otherwise a new one from the provider.
    pub async fn encryption_key(&self, key_name: &str) -> Result<Arc<LeasedKey>, ProviderError> {
        loop {
            let mut generated = false;
            let leased = self
                .encryption
                .try_get_with(key_name.to_owned(), async {
                    generated = true;
                    self.generate(key_name).await
                })
                .await
                .map_err(|error| (*error).clone())?;
            if !leased.exhausted(&self.settings.limits) {
                let counter = if generated {
                    &self.stats.encryption_cache_misses
                } else {
                    &self.stats.encryption_cache_hits
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Ok(leased);
            }
            // Replace it only if no one else has already done so.
            if let Some(current) = self.encryption.get(key_name).await
                && Arc::ptr_eq(&current, &leased)
            {
                self.encryption.invalidate(key_name).await;
            }
        }
    }

    async fn generate(&self, key_name: &str) -> Result<Arc<LeasedKey>, ProviderError> {
        let generated = counted(
            self.provider.generate(key_name).await,
            &self.stats.generate_ok,
            &self.stats.generate_failed,
        )?;
        let key = DataKey::new(generated.key_id, &generated.plaintext)
            .map_err(|error| self.invalid(self.operations().generate, error.to_string()))?;
        tracing::debug!(provider = self.provider.name(), key_name, "generated a new data key");
        Ok(Arc::new(LeasedKey {
            key,
            wrapped: STANDARD.encode(generated.wrapped),
            created: Instant::now(),
            payloads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }))
    }

    /// The data key wrapped in `wrapped_base64` (a payload's `data_key_encrypted`), or
    /// `None` when the provider says it is under another key than `expected_key`.
    /// Concurrent requests for the same blob share one provider call.
    pub async fn decryption_key(
        &self,
        expected_key: Option<&str>,
        wrapped_base64: &[u8],
    ) -> Result<Unwrapped, ProviderError> {
        let wrapped = STANDARD
            .decode(wrapped_base64)
            .map_err(|_| self.invalid(self.operations().unwrap, "data_key_encrypted is not base64".to_owned()))?;
        let mut fetched = false;
        let cache_key = (expected_key.map(str::to_owned), wrapped);
        let key = self
            .decryption
            .try_get_with_by_ref(&cache_key, async {
                fetched = true;
                self.unwrap_key(expected_key, &cache_key.1).await
            })
            .await
            .map_err(|error| (*error).clone())?;
        let counter = if fetched {
            &self.stats.decryption_cache_misses
        } else {
            &self.stats.decryption_cache_hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(key)
    }

    async fn unwrap_key(&self, expected_key: Option<&str>, wrapped: &[u8]) -> Result<Unwrapped, ProviderError> {
        let result = self.provider.unwrap(expected_key, wrapped).await;
        if let Err(error) = &result
            && error.kind == ProviderErrorKind::OtherKey
        {
            self.stats.unwrap_other_key.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let unwrapped = counted(result, &self.stats.unwrap_ok, &self.stats.unwrap_failed)?;
        DataKey::new(unwrapped.key_id, &unwrapped.plaintext)
            .map(|key| Some(Arc::new(key)))
            .map_err(|error| self.invalid(self.operations().unwrap, error.to_string()))
    }

    fn invalid(&self, operation: &'static str, message: String) -> ProviderError {
        ProviderError {
            provider: self.provider.name(),
            operation,
            kind: ProviderErrorKind::Invalid,
            message,
        }
    }
}

fn counted<T>(result: Result<T, ProviderError>, ok: &AtomicU64, failed: &AtomicU64) -> Result<T, ProviderError> {
    let counter = if result.is_ok() { ok } else { failed };
    counter.fetch_add(1, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use zeroize::Zeroizing;

    use super::*;
    use crate::keys::provider::{GeneratedKey, UnwrappedKey};

    /// Wraps by prefixing the key's name, and records every call.
    #[derive(Default)]
    struct NamingProvider {
        calls: Mutex<Vec<String>>,
    }

    impl KeyProvider for NamingProvider {
        fn name(&self) -> &'static str {
            "naming"
        }

        fn operations(&self) -> OperationNames {
            OperationNames {
                generate: "generate",
                unwrap: "unwrap",
            }
        }

        fn generate<'a>(
            &'a self,
            key_name: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<GeneratedKey, ProviderError>> {
            self.calls.lock().unwrap().push(format!("generate {key_name}"));
            Box::pin(async move {
                Ok(GeneratedKey {
                    plaintext: Zeroizing::new(vec![7; 32]),
                    wrapped: format!("{key_name}:wrapped").into_bytes(),
                    key_id: key_name.to_owned(),
                })
            })
        }

        fn unwrap<'a>(
            &'a self,
            expected_key: Option<&'a str>,
            wrapped: &'a [u8],
        ) -> futures_util::future::BoxFuture<'a, Result<UnwrappedKey, ProviderError>> {
            self.calls.lock().unwrap().push(format!("unwrap {expected_key:?}"));
            let text = String::from_utf8_lossy(wrapped).into_owned();
            Box::pin(async move {
                let (key_name, _) = text.split_once(':').unwrap();
                if expected_key.is_some_and(|expected| expected != key_name) {
                    return Err(ProviderError {
                        provider: "naming",
                        operation: "unwrap",
                        kind: ProviderErrorKind::OtherKey,
                        message: "under another key".to_owned(),
                    });
                }
                Ok(UnwrappedKey {
                    plaintext: Zeroizing::new(vec![7; 32]),
                    key_id: key_name.to_owned(),
                })
            })
        }
    }

    fn cached(provider: Arc<NamingProvider>) -> CachedKeys {
        CachedKeys::new(
            provider,
            CacheSettings {
                limits: DataKeyLimits {
                    max_age: Duration::from_secs(60),
                    max_payloads: 2,
                    max_bytes: u64::MAX,
                },
                decrypt_cache_ttl: Duration::from_secs(60),
                decrypt_cache_capacity: 100,
            },
        )
    }

    #[tokio::test]
    async fn a_data_key_serves_until_its_limit_then_a_new_one_is_made() {
        let provider = Arc::new(NamingProvider::default());
        let keys = cached(Arc::clone(&provider));
        let first = keys.encryption_key("tenant-a").await.unwrap();
        first.record_use(1, 10);
        assert!(Arc::ptr_eq(&first, &keys.encryption_key("tenant-a").await.unwrap()));
        first.record_use(1, 10);
        let second = keys.encryption_key("tenant-a").await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(provider.calls.lock().unwrap().len(), 2);
        assert_eq!(keys.stats().generate_ok.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_unwrap_for_one_key_never_answers_for_another_and_refusals_are_remembered() {
        let provider = Arc::new(NamingProvider::default());
        let keys = cached(Arc::clone(&provider));
        let wrapped = STANDARD.encode("tenant-b:wrapped");
        let for_b = keys.decryption_key(Some("tenant-b"), wrapped.as_bytes()).await.unwrap();
        assert_eq!(for_b.unwrap().id(), "tenant-b");
        for _ in 0..3 {
            let for_a = keys.decryption_key(Some("tenant-a"), wrapped.as_bytes()).await.unwrap();
            assert!(for_a.is_none(), "tenant-b's key was handed to tenant-a");
        }
        assert_eq!(
            *provider.calls.lock().unwrap(),
            ["unwrap Some(\"tenant-b\")", "unwrap Some(\"tenant-a\")"]
        );
        assert_eq!(keys.stats().unwrap_other_key.load(Ordering::Relaxed), 1);
        assert_eq!(keys.stats().decryption_cache_hits.load(Ordering::Relaxed), 2);
    }
}
