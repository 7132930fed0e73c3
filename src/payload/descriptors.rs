//! Builds the payload schema from a protobuf `FileDescriptorSet`: which fields of which
//! messages lead to a `temporal.api.common.v1.Payload`, and what each RPC carries.

use std::collections::{BTreeMap, BTreeSet};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use super::schema::{FieldClass, FieldRule, KnownFields, MessageIndex, MessageKind, MessageSchema, MethodSchema};

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const PAYLOADS: &str = "temporal.api.common.v1.Payloads";
const ANY: &str = "google.protobuf.Any";
const HISTORY: &str = "temporal.api.history.v1.History";
const STATUS: &str = "google.rpc.Status";

/// Fields the server must read, so their payloads are never encrypted.
const NEVER_ENCRYPTED: &[&str] = &[
    // The server JSON-decodes and indexes search attributes.
    "temporal.api.common.v1.SearchAttributes.indexed_fields",
    // Server-run compute providers and scalers read their configuration.
    "temporal.api.compute.v1.ComputeProvider.details",
    "temporal.api.compute.v1.ComputeScaler.details",
];

/// Field rules other than "always encrypt".
const CLASSIFIED_FIELDS: &[(&str, FieldClass)] = &[
    ("temporal.api.common.v1.Header.fields", FieldClass::Header),
    (
        "temporal.api.sdk.v1.UserMetadata.summary",
        FieldClass::UserMetadataSummary,
    ),
    (
        "temporal.api.sdk.v1.UserMetadata.details",
        FieldClass::UserMetadataDetails,
    ),
    (
        "temporal.api.deployment.v1.DeploymentInfo.metadata",
        FieldClass::OperatorData,
    ),
    (
        "temporal.api.deployment.v1.UpdateDeploymentMetadata.upsert_entries",
        FieldClass::OperatorData,
    ),
    (
        "temporal.api.deployment.v1.VersionMetadata.entries",
        FieldClass::OperatorData,
    ),
    (
        "temporal.api.workflowservice.v1.UpdateWorkerDeploymentVersionMetadataRequest.upsert_entries",
        FieldClass::OperatorData,
    ),
    (
        "temporal.api.nexus.v1.EndpointSpec.description",
        FieldClass::OperatorData,
    ),
    (
        "temporal.api.command.v1.ScheduleNexusOperationCommandAttributes.input",
        FieldClass::NexusOperationInput,
    ),
];

/// Message whose `input` is a system envelope when its `endpoint` names the system endpoint.
const NEXUS_COMMAND: &str = "temporal.api.command.v1.ScheduleNexusOperationCommandAttributes";

/// Message whose `message` and `stack_trace` strings are moved into an encrypted payload.
const FAILURE: &str = "temporal.api.failure.v1.Failure";

/// Nexus failure whose `details` may hold the protojson of a Temporal `Failure` (the
/// deprecated form of Nexus failures): it can carry payloads, in JSON.
const NEXUS_FAILURE: &str = "temporal.api.nexus.v1.Failure";

/// `repeated DataBlob` fields holding serialized histories.
const RAW_HISTORY_FIELD: &str = "temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryResponse.raw_history";

/// Why a descriptor set cannot serve as the payload schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the descriptor set has no message {0}: it must include the Temporal API with its imports")]
    MissingMessage(&'static str),
    #[error("the descriptor set has no field {0}, which the proxy's rules name")]
    MissingField(&'static str),
    #[error("{0} streams messages that carry payloads; the proxy rewrites only unary messages")]
    StreamingPayloads(String),
    #[error("the descriptor set holds more payload-bearing message types than the proxy indexes")]
    TooManyMessages,
}

/// What the analysis found: the message table (the types that reach a payload sorted by
/// name, then the synthetic history blob), the RPCs, and the names of the types of the API
/// that reach no payload.
pub struct Analysis {
    pub messages: Vec<MessageSchema>,
    pub methods: Vec<MethodSchema>,
    pub payload_free: Vec<String>,
}

struct Method {
    path: String,
    request: String,
    response: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Analyses `set`, which must hold the Temporal API (`temporal.api.*`) and its imports.
pub fn analyze(set: &FileDescriptorSet) -> Result<Analysis, SchemaError> {
    let mut messages = BTreeMap::new();
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            collect_messages(package, message, &mut messages);
        }
        for service in &file.service {
            for method in &service.method {
                methods.push(Method {
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    request: method.input_type().trim_start_matches('.').to_owned(),
                    response: method.output_type().trim_start_matches('.').to_owned(),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    methods.sort_by(|a, b| a.path.cmp(&b.path));
    methods.dedup_by(|a, b| a.path == b.path);
    Analyzer { messages, methods }.run()
}

struct Analyzer {
    messages: BTreeMap<String, DescriptorProto>,
    methods: Vec<Method>,
}

impl Analyzer {
    fn run(self) -> Result<Analysis, SchemaError> {
        self.check_rules()?;
        let reaching = self.reaching();
        let index: BTreeMap<&str, MessageIndex> = reaching
            .iter()
            .enumerate()
            .map(|(i, name)| MessageIndex::try_from(i).map(|i| (name.as_str(), i)))
            .collect::<Result<_, _>>()
            .map_err(|_| SchemaError::TooManyMessages)?;
        let history_blob = MessageIndex::try_from(reaching.len()).map_err(|_| SchemaError::TooManyMessages)?;
        let mut table = Vec::with_capacity(reaching.len() + 1);
        for name in &reaching {
            table.push(self.message_schema(name, &index, history_blob)?);
        }
        table.push(MessageSchema {
            name: "temporal.api.common.v1.DataBlob".to_owned(),
            kind: MessageKind::HistoryBlob {
                history: *index.get(HISTORY).ok_or(SchemaError::MissingMessage(HISTORY))?,
            },
            rule_mask: 0,
            fields: Vec::new(),
            known: KnownFields::default(),
            plain_mask: 0,
        });
        let mut methods = Vec::with_capacity(self.methods.len());
        for method in &self.methods {
            let streams_payloads = (method.client_streaming && index.contains_key(method.request.as_str()))
                || (method.server_streaming && index.contains_key(method.response.as_str()));
            if streams_payloads {
                return Err(SchemaError::StreamingPayloads(method.path.clone()));
            }
            methods.push(MethodSchema {
                path: method.path.clone(),
                request: index.get(method.request.as_str()).copied(),
                response: index.get(method.response.as_str()).copied(),
                client_streaming: method.client_streaming,
                server_streaming: method.server_streaming,
                namespace_field: self.namespace_field(&method.request),
            });
        }
        let payload_free = self
            .messages
            .keys()
            .filter(|name| !reaching.contains(*name))
            .cloned()
            .collect();
        Ok(Analysis {
            messages: table,
            methods,
            payload_free,
        })
    }

    /// Fails when a rule names a message or field the descriptors do not have.
    fn check_rules(&self) -> Result<(), SchemaError> {
        for message in [
            PAYLOAD,
            PAYLOADS,
            ANY,
            HISTORY,
            STATUS,
            FAILURE,
            NEXUS_FAILURE,
            NEXUS_COMMAND,
        ] {
            if !self.messages.contains_key(message) {
                return Err(SchemaError::MissingMessage(message));
            }
        }
        let named = NEVER_ENCRYPTED
            .iter()
            .copied()
            .chain(CLASSIFIED_FIELDS.iter().map(|(path, _)| *path))
            .chain([RAW_HISTORY_FIELD]);
        for path in named {
            let (message, field) = path.rsplit_once('.').expect("rule paths name a message and a field");
            let found = self
                .messages
                .get(message)
                .is_some_and(|m| m.field.iter().any(|f| f.name() == field));
            if !found {
                return Err(SchemaError::MissingField(path));
            }
        }
        Ok(())
    }

    fn message_field_target(field: &FieldDescriptorProto) -> Option<&str> {
        (field.r#type() == Type::Message).then(|| field.type_name().trim_start_matches('.'))
    }

    /// Names of all message types that can hold a payload, found by fixed-point iteration.
    fn reaching(&self) -> BTreeSet<String> {
        let mut reaching: BTreeSet<String> = [PAYLOAD.to_owned(), ANY.to_owned(), NEXUS_FAILURE.to_owned()].into();
        loop {
            let mut grew = false;
            for (name, message) in &self.messages {
                if reaching.contains(name) {
                    continue;
                }
                let reaches = message.field.iter().any(|field| {
                    let path = format!("{name}.{}", field.name());
                    if path == RAW_HISTORY_FIELD {
                        return true;
                    }
                    !NEVER_ENCRYPTED.contains(&path.as_str())
                        && Self::message_field_target(field).is_some_and(|target| reaching.contains(target))
                });
                if reaches {
                    reaching.insert(name.clone());
                    grew = true;
                }
            }
            if !grew {
                return reaching;
            }
        }
    }

    fn message_schema(
        &self,
        name: &str,
        index: &BTreeMap<&str, MessageIndex>,
        history_blob: MessageIndex,
    ) -> Result<MessageSchema, SchemaError> {
        let kind = match name {
            PAYLOAD => MessageKind::Payload,
            ANY => MessageKind::Any,
            NEXUS_COMMAND => MessageKind::NexusCommand {
                endpoint_field: self.field_number(NEXUS_COMMAND, "endpoint")?,
            },
            NEXUS_FAILURE => MessageKind::NexusFailure {
                metadata_field: self.field_number(NEXUS_FAILURE, "metadata")?,
                details_field: self.field_number(NEXUS_FAILURE, "details")?,
            },
            FAILURE => MessageKind::Failure {
                message_field: self.field_number(FAILURE, "message")?,
                stack_trace_field: self.field_number(FAILURE, "stack_trace")?,
                encoded_attributes_field: self.field_number(FAILURE, "encoded_attributes")?,
            },
            _ => MessageKind::Fields,
        };
        let mut fields = Vec::new();
        let mut rule_mask: u64 = 0;
        let mut known = KnownFields::default();
        if let Some(message) = self.messages.get(name) {
            // Sorted by number: the walker finds a field's rule by binary search.
            let mut sorted: Vec<_> = message.field.iter().collect();
            sorted.sort_by_key(|field| field.number());
            for field in sorted {
                let number = u32::try_from(field.number()).unwrap_or_default();
                known.insert(number);
                let path = format!("{name}.{}", field.name());
                if NEVER_ENCRYPTED.contains(&path.as_str()) {
                    continue;
                }
                let target = if path == RAW_HISTORY_FIELD {
                    history_blob
                } else {
                    match Self::message_field_target(field).and_then(|target| index.get(target).copied()) {
                        Some(target) => target,
                        None => continue,
                    }
                };
                let class = CLASSIFIED_FIELDS
                    .iter()
                    .find(|(rule, _)| *rule == path)
                    .map_or(FieldClass::Always, |(_, class)| *class);
                fields.push(FieldRule { number, target, class });
                if number < 64 {
                    rule_mask |= 1 << number;
                }
            }
        }
        Ok(MessageSchema {
            name: name.to_owned(),
            kind,
            rule_mask,
            fields,
            plain_mask: known.below_64() & !rule_mask,
            known,
        })
    }

    /// The number of the request's `namespace` string field, if it has one.
    fn namespace_field(&self, request: &str) -> Option<u32> {
        self.messages
            .get(request)?
            .field
            .iter()
            .find(|f| f.name() == "namespace" && f.r#type() == Type::String && f.label() != Label::Repeated)
            .and_then(|f| u32::try_from(f.number()).ok())
    }

    fn field_number(&self, message: &'static str, field: &'static str) -> Result<u32, SchemaError> {
        self.messages
            .get(message)
            .and_then(|m| m.field.iter().find(|f| f.name() == field))
            .and_then(|f| u32::try_from(f.number()).ok())
            .ok_or(SchemaError::MissingMessage(message))
    }
}

fn collect_messages(prefix: &str, message: &DescriptorProto, out: &mut BTreeMap<String, DescriptorProto>) {
    let name = if prefix.is_empty() {
        message.name().to_owned()
    } else {
        format!("{prefix}.{}", message.name())
    };
    for nested in &message.nested_type {
        collect_messages(&name, nested, out);
    }
    out.insert(name, message.clone());
}
