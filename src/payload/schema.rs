//! The payload schema as a value: built from the Temporal descriptors compiled into the
//! proxy, or from a descriptor set given at start-up, and the look-ups the walker makes.

use std::path::Path;
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::FileDescriptorSet;

use super::descriptors::{self, SchemaError};

/// Position of a message type in the schema's message table.
pub type MessageIndex = u16;

/// How the walker treats a message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An ordinary message: descend into the listed fields, copy the rest.
    Fields,
    /// `temporal.api.common.v1.Payload`: handed to the payload transformer.
    Payload,
    /// `google.protobuf.Any`: the value is walked as the type its `type_url` names.
    Any,
    /// A `DataBlob` holding a serialized `History` when its encoding is PROTO3.
    HistoryBlob { history: MessageIndex },
    /// `ScheduleNexusOperationCommandAttributes`: its input is a system envelope when the
    /// endpoint (which may come after the input on the wire) is the system endpoint.
    NexusCommand { endpoint_field: u32 },
    /// `temporal.api.nexus.v1.Failure`: when its metadata `type` names the Temporal
    /// `Failure`, its `details` are that failure's protojson, payloads included.
    NexusFailure { metadata_field: u32, details_field: u32 },
    /// `temporal.api.failure.v1.Failure`: its `message` and `stack_trace` are plain strings
    /// that can be moved into the `encoded_attributes` payload.
    Failure {
        message_field: u32,
        stack_trace_field: u32,
        encoded_attributes_field: u32,
    },
}

/// Why a field's payloads are, or are not, encrypted by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldClass {
    /// User data: always encrypted.
    Always,
    /// `Header.fields`: may carry propagated context; encrypted unless switched off.
    Header,
    /// `UserMetadata.summary`: encrypted unless switched off; the server caps it at 400 bytes.
    UserMetadataSummary,
    /// `UserMetadata.details`: encrypted unless switched off; the server caps it at 20,000 bytes.
    UserMetadataDetails,
    /// Deployment metadata and Nexus endpoint descriptions: read by operators' tooling,
    /// plaintext unless switched on.
    OperatorData,
    /// `ScheduleNexusOperationCommandAttributes.input`: user data unless the command
    /// targets the system endpoint.
    NexusOperationInput,
}

/// A field of a message that leads to payloads.
#[derive(Debug, Clone, Copy)]
pub struct FieldRule {
    pub number: u32,
    pub target: MessageIndex,
    pub class: FieldClass,
}

/// The field numbers a message type has in the schema's API version; any other number on
/// the wire is an unknown field (from a newer client, or a made-up one).
#[derive(Debug, Clone, Default)]
pub struct KnownFields {
    /// Bit `n` set when field `n` (below 64) is known: nearly every field number is small.
    mask: u64,
    /// Known numbers from 64 up, sorted.
    high: Vec<u32>,
}

impl KnownFields {
    pub fn insert(&mut self, number: u32) {
        if number < 64 {
            self.mask |= 1 << number;
        } else if let Err(at) = self.high.binary_search(&number) {
            self.high.insert(at, number);
        }
    }

    /// The known numbers below 64, bit `n` for field `n`.
    pub fn below_64(&self) -> u64 {
        self.mask
    }

    #[inline]
    pub fn contains(&self, number: u32) -> bool {
        if number < 64 {
            self.mask & (1 << number) != 0
        } else {
            self.high.binary_search(&number).is_ok()
        }
    }
}

/// A message type that can hold payloads.
#[derive(Debug)]
pub struct MessageSchema {
    pub name: String,
    pub kind: MessageKind,
    /// Bit `n` is set when field `n` (below 64) has a rule: most fields of a message lead to
    /// no payload, and this turns them away without a search.
    pub rule_mask: u64,
    /// Sorted by number.
    pub fields: Vec<FieldRule>,
    pub known: KnownFields,
    /// Bit `n` set when field `n` (below 64) is known and leads to no payload: the bulk of
    /// a message's fields, which the walker copies after one bit test.
    pub plain_mask: u64,
}

impl MessageSchema {
    /// Whether field `number` is known and leads to no payload, answered for small numbers
    /// only (`false` means: look further).
    #[inline]
    pub fn is_plain(&self, number: u32) -> bool {
        number < 64 && self.plain_mask & (1 << number) != 0
    }

    /// The rule for a field number.
    #[inline]
    pub fn rule(&self, number: u32) -> Option<&FieldRule> {
        if number < 64 && self.rule_mask & (1 << number) == 0 {
            return None;
        }
        let rules = &self.fields;
        rules
            .binary_search_by_key(&number, |rule| rule.number)
            .ok()
            .map(|index| &rules[index])
    }
}

/// An RPC and the payload-bearing types of its messages (`None`: nothing to rewrite).
#[derive(Debug)]
pub struct MethodSchema {
    pub path: String,
    pub request: Option<MessageIndex>,
    pub response: Option<MessageIndex>,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub namespace_field: Option<u32>,
}

/// What the schema knows of a message type named in an `Any` or a system envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedType {
    /// A type that can hold payloads, to be walked.
    Payloads(MessageIndex),
    /// A type of the API that holds no payloads.
    PayloadFree,
    /// A type the schema's API does not have: whether it holds payloads is unknown.
    Unknown,
}

/// The Temporal descriptors the proxy was built with (a serialized `FileDescriptorSet`).
pub static COMPILED_IN_DESCRIPTORS: &[u8] = include_bytes!(env!("TEMPORAL_CODEC_PROXY_DESCRIPTORS"));
/// The crate those descriptors come from, with its version.
const COMPILED_IN_SOURCE: &str = env!("TEMPORAL_CODEC_PROXY_API_VERSION");

/// Which fields of which messages lead to payloads, for every RPC of an API version.
#[derive(Debug)]
pub struct Schema {
    /// The types that reach a payload, sorted by name, then the synthetic history blob.
    messages: Vec<MessageSchema>,
    /// Sorted by path.
    methods: Vec<MethodSchema>,
    /// Sorted names of the API's types that reach no payload.
    payload_free: Vec<String>,
    /// Where the descriptors came from, as messages name it.
    source: String,
    pub payload_type: MessageIndex,
    pub payloads_type: MessageIndex,
    pub failure_type: MessageIndex,
    pub status_type: MessageIndex,
}

impl Schema {
    /// The schema of the Temporal API compiled into the proxy, built on first use.
    pub fn compiled_in() -> &'static Schema {
        static COMPILED_IN: OnceLock<Schema> = OnceLock::new();
        COMPILED_IN.get_or_init(|| {
            let set = FileDescriptorSet::decode(COMPILED_IN_DESCRIPTORS)
                .expect("the compiled-in descriptor set is a FileDescriptorSet");
            Schema::from_descriptors(&set, COMPILED_IN_SOURCE.to_owned())
                .expect("the compiled-in Temporal descriptors make a valid schema")
        })
    }

    /// The schema of the descriptor set in `path` (`protoc --descriptor_set_out
    /// --include_imports`, `buf build -o`), kept for the life of the process.
    pub fn load(path: &Path) -> Result<&'static Schema, String> {
        let bytes =
            std::fs::read(path).map_err(|error| format!("cannot read --descriptors {}: {error}", path.display()))?;
        let set = FileDescriptorSet::decode(bytes.as_slice()).map_err(|error| {
            format!(
                "--descriptors {} is not a serialized google.protobuf.FileDescriptorSet: {error}",
                path.display()
            )
        })?;
        let schema = Schema::from_descriptors(&set, format!("descriptors from {}", path.display()))
            .map_err(|error| format!("--descriptors {}: {error}", path.display()))?;
        Ok(Box::leak(Box::new(schema)))
    }

    /// Builds the schema of `set`; `source` says where it came from, in messages.
    pub fn from_descriptors(set: &FileDescriptorSet, source: String) -> Result<Self, SchemaError> {
        let analysis = descriptors::analyze(set)?;
        let mut schema = Schema {
            messages: analysis.messages,
            methods: analysis.methods,
            payload_free: analysis.payload_free,
            source,
            payload_type: 0,
            payloads_type: 0,
            failure_type: 0,
            status_type: 0,
        };
        let find =
            |schema: &Schema, name: &'static str| schema.message_by_name(name).ok_or(SchemaError::MissingMessage(name));
        schema.payload_type = find(&schema, "temporal.api.common.v1.Payload")?;
        schema.payloads_type = find(&schema, "temporal.api.common.v1.Payloads")?;
        schema.failure_type = find(&schema, "temporal.api.failure.v1.Failure")?;
        schema.status_type = find(&schema, "google.rpc.Status")?;
        Ok(schema)
    }

    /// Where the descriptors came from: the crate compiled in, or a file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// One line for operators: the source and what it covers.
    pub fn summary(&self) -> String {
        let rewritten = self
            .methods
            .iter()
            .filter(|method| method.request.is_some() || method.response.is_some())
            .count();
        format!(
            "{}: {} methods, {rewritten} of them carrying payloads; {} payload-bearing message types",
            self.source,
            self.methods.len(),
            self.messages.len() - 1
        )
    }

    /// The schema of a message type by index.
    #[inline]
    pub fn message(&self, index: MessageIndex) -> &MessageSchema {
        &self.messages[usize::from(index)]
    }

    /// Every payload-bearing message type, the synthetic history blob last.
    pub fn messages(&self) -> &[MessageSchema] {
        &self.messages
    }

    /// Every RPC of every service in the descriptors, sorted by path.
    pub fn methods(&self) -> &[MethodSchema] {
        &self.methods
    }

    /// The index of a payload-bearing message type by its full name (`temporal.api.x.v1.Name`).
    pub fn message_by_name(&self, name: &str) -> Option<MessageIndex> {
        // The last entry is the synthetic history blob; the rest are sorted by name.
        let named = &self.messages[..self.messages.len() - 1];
        named
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .and_then(|i| MessageIndex::try_from(i).ok())
    }

    /// Looks up a message type by its full name.
    pub fn named_type(&self, name: &str) -> NamedType {
        if let Some(index) = self.message_by_name(name) {
            NamedType::Payloads(index)
        } else if self
            .payload_free
            .binary_search_by(|known| known.as_str().cmp(name))
            .is_ok()
        {
            NamedType::PayloadFree
        } else {
            NamedType::Unknown
        }
    }

    /// The schema of an RPC by its HTTP/2 path (`/package.Service/Method`).
    pub fn method(&self, path: &str) -> Option<&MethodSchema> {
        self.methods
            .binary_search_by(|m| m.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.methods[i])
    }
}
