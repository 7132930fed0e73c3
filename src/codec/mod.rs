//! The payload codec: encrypts request payloads and decrypts response payloads of whole messages.

pub mod samples_format;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::keys::{DataKey, Keyring, KeyringError};
use crate::payload::schema::{FieldClass, MessageIndex, Schema};
use crate::payload::view::{PayloadView, holds_payload};
use crate::payload::walker::{FailureTexts, REQUEST_MAX_DEPTH};
use crate::payload::{PayloadTransformer, WalkError, rewrite};
use prost::Message as _;
use temporalio_protos::temporal::api::common::v1::Payload;

use crate::keys::cache::{CachedKeys, LeasedKey};
use crate::keys::namespaces::{KeySet, NamespaceKeys, UnwrapRule};
use crate::keys::provider::ProviderError;
use crate::keys::{KeySelector, NoNamespace};

/// Messages at least this large are rewritten on the blocking pool, so one big history
/// does not hold up the other calls sharing a reactor thread; smaller ones are cheaper
/// to rewrite in place than to hand over.
pub const BLOCKING_THRESHOLD: usize = 256 * 1024;

/// Requests that answer the server's own Nexus tasks (worker control, the system
/// endpoint): the server reads their results, and it makes payloads with no metadata at
/// all for them. Only in these are payloads with empty metadata left as they are; anywhere
/// else such a payload is user data like any other.
const NEXUS_TASK_ANSWERS: &[&str] = &[
    "temporal.api.workflowservice.v1.RespondNexusTaskCompletedRequest",
    "temporal.api.workflowservice.v1.RespondNexusTaskFailedRequest",
];

fn nexus_task_answers(schema: &Schema) -> Vec<MessageIndex> {
    NEXUS_TASK_ANSWERS
        .iter()
        .filter_map(|name| schema.message_by_name(name))
        .collect()
}

/// Which optional payload classes are encrypted.
#[derive(Debug, Clone, Copy)]
pub struct EncryptionPolicy {
    pub headers: bool,
    pub user_metadata: bool,
    pub operator_data: bool,
    /// Move failure messages and stack traces into an encrypted payload.
    pub failure_messages: bool,
}

impl Default for EncryptionPolicy {
    fn default() -> Self {
        Self {
            headers: true,
            user_metadata: true,
            operator_data: false,
            failure_messages: true,
        }
    }
}

impl EncryptionPolicy {
    fn encrypts(&self, class: FieldClass) -> bool {
        match class {
            FieldClass::Always | FieldClass::NexusOperationInput => true,
            FieldClass::Header => self.headers,
            FieldClass::UserMetadataSummary | FieldClass::UserMetadataDetails => self.user_metadata,
            FieldClass::OperatorData => self.operator_data,
        }
    }
}

/// Running totals of the codec's work.
#[derive(Debug, Default)]
pub struct CodecStats {
    pub payloads_encrypted: AtomicU64,
    pub payloads_decrypted: AtomicU64,
    pub plaintext_bytes_encrypted: AtomicU64,
    pub plaintext_bytes_decrypted: AtomicU64,
    /// Encrypted payloads under a key this codec does not hold, passed through as they are.
    pub payloads_unknown_key: AtomicU64,
    /// Encrypted payloads under a held key that failed authentication.
    pub payloads_failed_authentication: AtomicU64,
    /// Request payloads labelled `binary/encrypted` that no held key authenticated, and that
    /// were therefore encrypted again.
    pub payloads_encrypted_again: AtomicU64,
    /// Request fields the schema does not know that hold no payload, passed on unchanged.
    pub unknown_fields: AtomicU64,
    /// Encrypted payloads under a key of another namespace than the call's, passed through
    /// as they are.
    pub payloads_other_namespace_key: AtomicU64,
}

/// The key one call encrypts its payloads with, and its namespace's other keys.
#[derive(Clone)]
pub struct EncryptionKey {
    key: KeyInUse,
    namespace_keys: Arc<KeySet>,
}

#[derive(Clone)]
enum KeyInUse {
    Static(Arc<DataKey>),
    /// A data key from a key provider, written with its wrapped form.
    Provided(Arc<LeasedKey>),
}

impl EncryptionKey {
    fn data_key(&self) -> &DataKey {
        match &self.key {
            KeyInUse::Static(key) => key,
            KeyInUse::Provided(leased) => &leased.key,
        }
    }

    fn wrapped(&self) -> Option<&[u8]> {
        match &self.key {
            KeyInUse::Static(_) => None,
            KeyInUse::Provided(leased) => Some(leased.wrapped.as_bytes()),
        }
    }
}

/// The keys one message's payloads may be decrypted with: its namespace's static keys, and
/// the provider data keys unwrapped for it, by their base64 `data_key_encrypted` (`None`:
/// the provider said it is under another namespace's key).
#[derive(Default)]
pub struct DecryptionKeys {
    namespace_keys: Option<Arc<KeySet>>,
    unwrapped: HashMap<Vec<u8>, Option<Arc<DataKey>>>,
}

/// The keys one message needs, resolved before the CPU work: the key to encrypt with, or
/// the keys to decrypt with.
pub enum MessageKeys {
    Encryption(EncryptionKey),
    Decryption(DecryptionKeys),
}

/// Why a message's keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    NoNamespace(#[from] NoNamespace),
    #[error("no encryption key: configure --key or --kms-key")]
    NoKey,
    #[error(
        "namespace {0:?} has no key in this proxy's configuration, so its payloads cannot be \
         encrypted; nothing was sent"
    )]
    NoKeyForNamespace(String),
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// Data keys from a key provider, and which provider key each namespace uses.
pub struct ProviderKeys {
    pub cache: CachedKeys,
    pub selector: KeySelector,
}

/// Encrypts and decrypts every payload of a message: static keys, a key provider, or both,
/// each namespace under its own.
pub struct Codec {
    keys: NamespaceKeys,
    provider: Option<CachedKeys>,
    policy: EncryptionPolicy,
    stats: CodecStats,
    /// Largest message a rewrite may produce.
    max_message_bytes: usize,
    schema: &'static Schema,
    /// [`NEXUS_TASK_ANSWERS`] in `schema`, looked up once rather than by name per call.
    nexus_task_answers: Vec<MessageIndex>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("keys", &self.keys)
            .field("provider", &self.provider.as_ref().map(CachedKeys::provider_name))
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec whose static keys serve every namespace.
    pub fn new(keyring: Keyring, policy: EncryptionPolicy) -> Self {
        Self::with_namespaces(NamespaceKeys::shared(KeySet::new(keyring, None, false)), None, policy)
    }

    /// A codec that keeps each namespace to the keys `keys` gives it.
    pub fn with_namespaces(keys: NamespaceKeys, provider: Option<CachedKeys>, policy: EncryptionPolicy) -> Self {
        Self {
            keys,
            provider,
            policy,
            stats: CodecStats::default(),
            max_message_bytes: usize::MAX,
            schema: Schema::compiled_in(),
            nexus_task_answers: nexus_task_answers(Schema::compiled_in()),
        }
    }

    /// Finds payloads by `schema` instead of the compiled-in Temporal API.
    pub fn with_schema(mut self, schema: &'static Schema) -> Self {
        self.schema = schema;
        self.nexus_task_answers = nexus_task_answers(schema);
        self
    }

    /// Where this codec finds payloads: the schema of the Temporal API it serves.
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Refuses to produce a message larger than `limit` bytes: a request of many small
    /// payloads grows many times over once encrypted, and the walk stops as soon as its output
    /// passes the limit, so the growth costs at most the limit.
    pub fn with_message_limit(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// A codec that encrypts with a provider's data keys and still decrypts the static
    /// keyring's payloads.
    /// With a key per namespace from a template, an unwrap names the namespace's key; with
    /// one key for all, any key the provider holds unwraps.
    pub fn with_provider(keyring: Keyring, provider: ProviderKeys, policy: EncryptionPolicy) -> Self {
        let binds_unwrap = matches!(provider.selector, KeySelector::Template(_));
        let keys = NamespaceKeys::shared(KeySet::new(keyring, Some(provider.selector), binds_unwrap));
        Self::with_namespaces(keys, Some(provider.cache), policy)
    }

    pub fn namespace_keys(&self) -> &NamespaceKeys {
        &self.keys
    }

    pub fn provider(&self) -> Option<&CachedKeys> {
        self.provider.as_ref()
    }

    pub fn stats(&self) -> &CodecStats {
        &self.stats
    }

    /// The key for encrypting a namespace's payloads: its provider key when it has one,
    /// else its active static key. A namespace without keys is refused.
    pub async fn encryption_key(&self, namespace: &str) -> Result<EncryptionKey, KeyError> {
        let namespace_keys = self
            .keys
            .for_namespace(namespace)
            .ok_or_else(|| KeyError::NoKeyForNamespace(namespace.to_owned()))?;
        let key = match (namespace_keys.provider_key(namespace), &self.provider) {
            (Some(key_name), Some(provider)) => {
                // Boxed: the provider call's future is large, and every call's future would carry it.
                KeyInUse::Provided(Box::pin(provider.encryption_key(&key_name?)).await?)
            }
            (Some(_), None) => return Err(KeyError::NoKey),
            (None, _) => KeyInUse::Static(namespace_keys.static_keys().active().cloned().ok_or(KeyError::NoKey)?),
        };
        Ok(EncryptionKey {
            key,
            namespace_keys: Arc::clone(namespace_keys),
        })
    }

    /// The keys for decrypting a namespace's message: its static keys, and the provider
    /// data keys its envelope payloads need, unwrapped through the cache.
    pub async fn decryption_keys(
        &self,
        namespace: &str,
        message_type: MessageIndex,
        message: &[u8],
    ) -> Result<DecryptionKeys, KeyError> {
        let mut collector = WrappedKeyCollector::default();
        if self.provider.is_some() {
            rewrite(self.schema, message, message_type, &mut collector)?;
        }
        self.resolve(namespace, collector.wrapped).await
    }

    /// [`Codec::decryption_keys`] for payloads already decoded into messages.
    pub async fn payload_decryption_keys(
        &self,
        namespace: &str,
        payloads: &[Payload],
    ) -> Result<DecryptionKeys, KeyError> {
        let mut collector = WrappedKeyCollector::default();
        if self.provider.is_some() {
            for payload in payloads {
                collector.collect(&PayloadView::of_message(payload));
            }
        }
        self.resolve(namespace, collector.wrapped).await
    }

    /// Unwraps each of `wrapped_keys` as the namespace's rule allows: naming its key, so
    /// a key wrapped under another namespace's is refused by the provider itself.
    async fn resolve(&self, namespace: &str, wrapped_keys: BTreeSet<Vec<u8>>) -> Result<DecryptionKeys, KeyError> {
        let Some(namespace_keys) = self.keys.for_namespace(namespace) else {
            return Ok(DecryptionKeys::default());
        };
        let mut unwrapped = HashMap::new();
        if let Some(provider) = &self.provider {
            let rule = namespace_keys.unwrap_rule(namespace);
            for wrapped in wrapped_keys {
                let key = match &rule {
                    UnwrapRule::Refuse => None,
                    UnwrapRule::AnyKey => Box::pin(provider.decryption_key(None, &wrapped)).await?,
                    UnwrapRule::Named(key) => Box::pin(provider.decryption_key(Some(key), &wrapped)).await?,
                };
                unwrapped.insert(wrapped, key);
            }
        }
        Ok(DecryptionKeys {
            namespace_keys: Some(Arc::clone(namespace_keys)),
            unwrapped,
        })
    }

    /// Encrypts or decrypts `message` with keys resolved beforehand.
    pub fn rewrite_with(
        &self,
        keys: &MessageKeys,
        message_type: MessageIndex,
        message: &[u8],
    ) -> Result<Vec<u8>, WalkError> {
        match keys {
            MessageKeys::Encryption(key) => self.encode_with(key, message_type, message),
            MessageKeys::Decryption(resolved) => self.decode_with(resolved, message_type, message),
        }
    }

    /// Encrypts with the active static key of the keys that serve calls naming no
    /// namespace.
    pub fn encode(&self, message_type: MessageIndex, message: &[u8]) -> Result<Vec<u8>, WalkError> {
        let namespace_keys = self.keys.for_namespace("").ok_or(WalkError::Encryption)?;
        let key = EncryptionKey {
            key: KeyInUse::Static(
                namespace_keys
                    .static_keys()
                    .active()
                    .cloned()
                    .ok_or(WalkError::Encryption)?,
            ),
            namespace_keys: Arc::clone(namespace_keys),
        };
        self.encode_with(&key, message_type, message)
    }

    /// Encrypts every payload of `message` (of type `message_type`) that policy selects.
    pub fn encode_with(
        &self,
        key: &EncryptionKey,
        message_type: MessageIndex,
        message: &[u8],
    ) -> Result<Vec<u8>, WalkError> {
        let mut encryptor = Encryptor {
            key: key.data_key(),
            wrapped: key.wrapped(),
            keyring: key.namespace_keys.static_keys(),
            policy: self.policy,
            max_message_bytes: self.max_message_bytes,
            payloads: 0,
            bytes: 0,
            encrypted_again: 0,
            opened: Vec::new(),
            unknown_fields: 0,
            exempts_empty_metadata: self.nexus_task_answers.contains(&message_type),
        };
        let out = rewrite(self.schema, message, message_type, &mut encryptor)?;
        if let KeyInUse::Provided(leased) = &key.key {
            leased.record_use(encryptor.payloads, encryptor.bytes);
        }
        self.record_encryption(&encryptor);
        Ok(out)
    }

    /// Decrypts with the static keys that serve calls naming no namespace.
    pub fn decode(&self, message_type: MessageIndex, message: &[u8]) -> Result<Vec<u8>, WalkError> {
        self.decode_with(&self.static_decryption_keys(""), message_type, message)
    }

    /// A namespace's static keys alone, for payloads that need no provider.
    pub fn static_decryption_keys(&self, namespace: &str) -> DecryptionKeys {
        DecryptionKeys {
            namespace_keys: self.keys.for_namespace(namespace).cloned(),
            unwrapped: HashMap::new(),
        }
    }

    /// Decrypts every payload of `message` encrypted under a key this codec holds: a static
    /// key by id, or a KMS data key resolved beforehand.
    pub fn decode_with(
        &self,
        keys: &DecryptionKeys,
        message_type: MessageIndex,
        message: &[u8],
    ) -> Result<Vec<u8>, WalkError> {
        let mut decryptor = self.decryptor(keys);
        let result = rewrite(self.schema, message, message_type, &mut decryptor);
        self.record_decryption(&decryptor, result.as_ref().err());
        result
    }

    /// Decrypts payloads already decoded into messages, as [`Codec::decode_with`] does for
    /// a serialized `Payloads`, without serializing them first: the codec server receives
    /// them as JSON and answers with JSON.
    pub fn decode_payloads(&self, keys: &DecryptionKeys, payloads: Vec<Payload>) -> Result<Vec<Payload>, WalkError> {
        let mut decryptor = self.decryptor(keys);
        let mut plaintext = Vec::new();
        let result: Result<Vec<Payload>, WalkError> = payloads
            .into_iter()
            .map(|payload| {
                plaintext.clear();
                if !decryptor.open(&PayloadView::of_message(&payload), &mut plaintext)? {
                    return Ok(payload);
                }
                Payload::decode(plaintext.as_slice()).map_err(|error| {
                    WalkError::malformed(format!("a decrypted payload is not a Payload message: {error}"))
                })
            })
            .collect();
        self.record_decryption(&decryptor, result.as_ref().err());
        result
    }

    fn decryptor<'k>(&'k self, keys: &'k DecryptionKeys) -> Decryptor<'k> {
        Decryptor {
            keyring: keys.namespace_keys.as_ref().map(|set| set.static_keys()),
            unwrapped: &keys.unwrapped,
            all_keys: &self.keys,
            max_message_bytes: self.max_message_bytes,
            payloads: 0,
            bytes: 0,
            unknown_keys: 0,
            unknown_key_ids: BTreeSet::new(),
            other_namespace_keys: 0,
        }
    }

    fn record_encryption(&self, encryptor: &Encryptor<'_>) {
        let stats = &self.stats;
        for (counter, value) in [
            (&stats.payloads_encrypted, encryptor.payloads),
            (&stats.plaintext_bytes_encrypted, encryptor.bytes),
            (&stats.unknown_fields, encryptor.unknown_fields),
            (&stats.payloads_encrypted_again, encryptor.encrypted_again),
        ] {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
        if encryptor.wrapped.is_none() && encryptor.payloads > 0 && encryptor.key.count_encryptions(encryptor.payloads)
        {
            tracing::warn!(
                key = encryptor.key.id(),
                encryptions = encryptor.key.encryptions(),
                "this static key has encrypted another 2^30 payloads in this process; with random \
                 96-bit nonces one key should encrypt at most 2^32 in all, across every process \
                 that shares it: put a new key first to rotate, or use KMS data keys"
            );
        }
        if encryptor.encrypted_again > 0 {
            tracing::debug!(
                payloads = encryptor.encrypted_again,
                "encrypted payloads labelled binary/encrypted that no held key authenticates"
            );
        }
    }

    fn record_decryption(&self, decryptor: &Decryptor<'_>, error: Option<&WalkError>) {
        self.stats
            .payloads_decrypted
            .fetch_add(decryptor.payloads, Ordering::Relaxed);
        self.stats
            .plaintext_bytes_decrypted
            .fetch_add(decryptor.bytes, Ordering::Relaxed);
        if decryptor.unknown_keys > 0 {
            self.stats
                .payloads_unknown_key
                .fetch_add(decryptor.unknown_keys, Ordering::Relaxed);
            tracing::warn!(
                payloads = decryptor.unknown_keys,
                key_ids = ?decryptor.unknown_key_ids,
                "passing through encrypted payloads under keys this proxy does not hold"
            );
        }
        if decryptor.other_namespace_keys > 0 {
            self.stats
                .payloads_other_namespace_key
                .fetch_add(decryptor.other_namespace_keys, Ordering::Relaxed);
            tracing::warn!(
                payloads = decryptor.other_namespace_keys,
                "passing through encrypted payloads under another namespace's key"
            );
        }
        if let Some(WalkError::Authentication { key_id }) = error {
            self.stats
                .payloads_failed_authentication
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key_id, "encrypted payload failed authentication");
        }
    }
}

struct Encryptor<'k> {
    key: &'k DataKey,
    wrapped: Option<&'k [u8]>,
    /// Static keys a payload already labelled `binary/encrypted` may prove it is under.
    keyring: &'k Keyring,
    policy: EncryptionPolicy,
    max_message_bytes: usize,
    payloads: u64,
    bytes: u64,
    /// Payloads labelled encrypted that no held key authenticates, encrypted once more.
    encrypted_again: u64,
    /// Scratch space for checking labelled payloads.
    opened: Vec<u8>,
    /// Fields the schema does not know, holding no payload.
    unknown_fields: u64,
    /// The request answers a server-made Nexus task: payloads without metadata stay.
    exempts_empty_metadata: bool,
}

impl Encryptor<'_> {
    /// Whether a payload labelled `binary/encrypted` really is ciphertext under a static key
    /// this proxy holds. A label costs a caller nothing to write, so only a key that
    /// authenticates the ciphertext lets it pass unchanged. Envelope (KMS) payloads are not
    /// unwrapped here: KMS would have to be asked in the middle of the walk, so they count
    /// as under a foreign key.
    fn authenticates(&mut self, view: &PayloadView<'_>) -> bool {
        if view.data_key_encrypted.is_some() {
            return false;
        }
        let Some(key) = self.keyring.get(view.key_id.unwrap_or_default()) else {
            return false;
        };
        self.opened.clear();
        let authentic = samples_format::decrypt_payload(key, view.data, &mut self.opened).is_ok();
        zeroize::Zeroize::zeroize(&mut self.opened);
        authentic
    }
}

impl PayloadTransformer for Encryptor<'_> {
    fn enters(&self, class: FieldClass) -> bool {
        self.policy.encrypts(class)
    }

    fn failure_texts(&self) -> FailureTexts {
        if self.policy.failure_messages {
            FailureTexts::Conceal
        } else {
            FailureTexts::Keep
        }
    }

    fn max_depth(&self) -> u32 {
        REQUEST_MAX_DEPTH
    }

    fn max_output_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn opaque(&self, what: String) -> Result<(), WalkError> {
        Err(WalkError::Opaque(what))
    }

    fn unknown_field(&mut self, message: &str, number: u32, content: &[u8]) -> Result<(), WalkError> {
        if holds_payload(content) {
            return Err(WalkError::UnknownPayloadField {
                message: message.to_owned(),
                field: number,
            });
        }
        self.unknown_fields += 1;
        Ok(())
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        // Ciphertext under a held key is never wrapped twice.
        if view.metadata_entries == 0 && self.exempts_empty_metadata {
            out.extend_from_slice(payload);
            return Ok(false);
        }
        if view.is_encrypted() {
            if self.authenticates(view) {
                out.extend_from_slice(payload);
                return Ok(false);
            }
            // A client's own codec under a foreign key, or a label on plaintext: encrypted
            // like any payload, and unwrapped on the way back to exactly what was sent.
            self.encrypted_again += 1;
        }
        samples_format::encrypt_payload(self.key, self.wrapped, payload, out)?;
        self.payloads += 1;
        self.bytes += payload.len() as u64;
        Ok(true)
    }
}

struct Decryptor<'k> {
    /// The namespace's static keys; `None` when it has no keys at all.
    keyring: Option<&'k Keyring>,
    unwrapped: &'k HashMap<Vec<u8>, Option<Arc<DataKey>>>,
    /// Every namespace's keys, to tell another namespace's key from a foreign one.
    all_keys: &'k NamespaceKeys,
    max_message_bytes: usize,
    payloads: u64,
    bytes: u64,
    unknown_keys: u64,
    unknown_key_ids: BTreeSet<String>,
    other_namespace_keys: u64,
}

impl PayloadTransformer for Decryptor<'_> {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    // Whatever the policy, so that switching it off leaves earlier failures readable.
    fn failure_texts(&self) -> FailureTexts {
        FailureTexts::Reveal
    }

    fn max_output_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        let opened = self.open(view, out)?;
        if !opened {
            out.extend_from_slice(payload);
        }
        Ok(opened)
    }
}

impl Decryptor<'_> {
    /// Counts a payload left encrypted because its key is another namespace's.
    fn under_another_namespaces_key(&mut self) -> bool {
        self.other_namespace_keys += 1;
        false
    }

    /// Writes the plaintext of an encrypted payload to `out`. Returns false, writing
    /// nothing, for a payload that is not encrypted or is under a key this codec does not hold.
    fn open(&mut self, view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        if !view.is_encrypted() {
            return Ok(false);
        }
        let key_id = view.key_id.unwrap_or_default();
        // An envelope (KMS) payload is read with its unwrapped data key, whatever its key id
        // says: the samples' KMS codec writes none.
        let key = match view.data_key_encrypted {
            Some(wrapped) => match self.unwrapped.get(wrapped) {
                Some(Some(key)) => Some(&**key),
                Some(None) => return Ok(self.under_another_namespaces_key()),
                None if self.all_keys.uses_provider() => return Ok(self.under_another_namespaces_key()),
                None => None,
            },
            None => match self.keyring.and_then(|keyring| keyring.get(key_id)) {
                Some(key) => Some(key),
                None if self.all_keys.holds_static_key(key_id) => return Ok(self.under_another_namespaces_key()),
                None => None,
            },
        };
        let Some(key) = key else {
            self.unknown_keys += 1;
            if self.unknown_key_ids.len() < 8 {
                let id = if view.data_key_encrypted.is_some() && key_id.is_empty() {
                    "aws-kms".to_owned()
                } else {
                    String::from_utf8_lossy(key_id).into_owned()
                };
                self.unknown_key_ids.insert(id);
            }
            return Ok(false);
        };
        let start = out.len();
        samples_format::decrypt_payload(key, view.data, out)?;
        self.payloads += 1;
        self.bytes += (out.len() - start) as u64;
        Ok(true)
    }
}

/// Collects the wrapped data keys of a message's envelope payloads, copying it unchanged.
#[derive(Default)]
struct WrappedKeyCollector {
    wrapped: BTreeSet<Vec<u8>>,
}

impl WrappedKeyCollector {
    fn collect(&mut self, view: &PayloadView<'_>) {
        if view.is_encrypted()
            && let Some(wrapped) = view.data_key_encrypted
        {
            self.wrapped.insert(wrapped.to_vec());
        }
    }
}

impl PayloadTransformer for WrappedKeyCollector {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        self.collect(view);
        out.extend_from_slice(payload);
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
