//! Generates the payload schema table from the Temporal protobuf descriptors.
//!
//! For every message type that can transitively hold a `temporal.api.common.v1.Payload`
//! the table lists the fields to descend into, and for every RPC of every service the
//! request and response types. The run-time walker (`src/payload/`) uses it to rewrite
//! payloads on the wire without decoding whole messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const ANY: &str = "google.protobuf.Any";
const HISTORY: &str = "temporal.api.history.v1.History";

/// Fields the server must read, so their payloads are never encrypted.
const NEVER_ENCRYPTED: &[&str] = &[
    // The server JSON-decodes and indexes search attributes.
    "temporal.api.common.v1.SearchAttributes.indexed_fields",
    // Server-run compute providers and scalers read their configuration.
    "temporal.api.compute.v1.ComputeProvider.details",
    "temporal.api.compute.v1.ComputeScaler.details",
];

/// Field rules other than "always encrypt": (field path, class name in `FieldClass`).
const CLASSIFIED_FIELDS: &[(&str, &str)] = &[
    ("temporal.api.common.v1.Header.fields", "Header"),
    ("temporal.api.sdk.v1.UserMetadata.summary", "UserMetadataSummary"),
    ("temporal.api.sdk.v1.UserMetadata.details", "UserMetadataDetails"),
    ("temporal.api.deployment.v1.DeploymentInfo.metadata", "OperatorData"),
    (
        "temporal.api.deployment.v1.UpdateDeploymentMetadata.upsert_entries",
        "OperatorData",
    ),
    ("temporal.api.deployment.v1.VersionMetadata.entries", "OperatorData"),
    (
        "temporal.api.workflowservice.v1.UpdateWorkerDeploymentVersionMetadataRequest.upsert_entries",
        "OperatorData",
    ),
    ("temporal.api.nexus.v1.EndpointSpec.description", "OperatorData"),
    (
        "temporal.api.command.v1.ScheduleNexusOperationCommandAttributes.input",
        "NexusOperationInput",
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

fn main() {
    let descriptor_path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .expect("temporalio-protos exports its descriptor set to dependents");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={descriptor_path}");
    let bytes = std::fs::read(&descriptor_path).expect("read Temporal descriptor set");
    let set = FileDescriptorSet::decode(bytes.as_slice()).expect("decode Temporal descriptor set");
    let schema = Schema::from_descriptors(&set);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("schema_table.rs");
    let table = format!(
        "{}/// The crate whose Temporal API descriptors the table was built from, as errors name it.\npub const API_VERSION: &str = {:?};\n",
        schema.render(),
        protos_version()
    );
    std::fs::write(out, table).expect("write schema table");
}

/// `temporalio-protos <version>` as the lock file pins it.
fn protos_version() -> String {
    let lock = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"temporalio-protos\""
            && let Some(version) = lines.next().and_then(|next| next.strip_prefix("version = "))
        {
            return format!("temporalio-protos {}", version.trim_matches('"'));
        }
    }
    "temporalio-protos".to_owned()
}

struct Method {
    path: String,
    request: String,
    response: String,
    client_streaming: bool,
    server_streaming: bool,
}

struct Schema {
    messages: BTreeMap<String, DescriptorProto>,
    methods: Vec<Method>,
}

impl Schema {
    fn from_descriptors(set: &FileDescriptorSet) -> Self {
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
        let schema = Schema { messages, methods };
        schema.check_rules();
        schema
    }

    /// Fails the build when a rule names a field the descriptors no longer have.
    fn check_rules(&self) {
        let named = NEVER_ENCRYPTED
            .iter()
            .copied()
            .chain(CLASSIFIED_FIELDS.iter().map(|(path, _)| *path))
            .chain([RAW_HISTORY_FIELD]);
        for path in named {
            let (message, field) = path.rsplit_once('.').unwrap();
            let found = self
                .messages
                .get(message)
                .is_some_and(|m| m.field.iter().any(|f| f.name() == field));
            assert!(found, "schema rule names a field that does not exist: {path}");
        }
    }

    fn message_field_target(field: &prost_types::FieldDescriptorProto) -> Option<String> {
        (field.r#type() == Type::Message).then(|| field.type_name().trim_start_matches('.').to_owned())
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
                        && Self::message_field_target(field).is_some_and(|t| reaching.contains(&t))
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

    fn render(&self) -> String {
        let reaching = self.reaching();
        // Index order: the reaching messages sorted by name, then the synthetic history blob.
        let index: BTreeMap<&str, usize> = reaching.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let history_blob_index = reaching.len();
        let mut out = String::new();
        writeln!(
            out,
            "// Generated by build.rs from the Temporal descriptor set. Do not edit."
        )
        .unwrap();
        writeln!(out, "pub static MESSAGES: &[MessageSchema] = &[").unwrap();
        for name in &reaching {
            let kind = match name.as_str() {
                PAYLOAD => "MessageKind::Payload".to_owned(),
                ANY => "MessageKind::Any".to_owned(),
                NEXUS_COMMAND => {
                    let endpoint = self.field_number(NEXUS_COMMAND, "endpoint");
                    format!("MessageKind::NexusCommand {{ endpoint_field: {endpoint} }}")
                }
                NEXUS_FAILURE => format!(
                    "MessageKind::NexusFailure {{ metadata_field: {}, details_field: {} }}",
                    self.field_number(NEXUS_FAILURE, "metadata"),
                    self.field_number(NEXUS_FAILURE, "details")
                ),
                FAILURE => format!(
                    "MessageKind::Failure {{ message_field: {}, stack_trace_field: {}, encoded_attributes_field: {} }}",
                    self.field_number(FAILURE, "message"),
                    self.field_number(FAILURE, "stack_trace"),
                    self.field_number(FAILURE, "encoded_attributes")
                ),
                _ => "MessageKind::Fields".to_owned(),
            };
            let mut fields = String::new();
            let mut rule_mask: u64 = 0;
            if let Some(message) = self.messages.get(name) {
                // Sorted by number: the walker finds a field's rule by binary search.
                let mut sorted: Vec<_> = message.field.iter().collect();
                sorted.sort_by_key(|field| field.number());
                for field in sorted {
                    let path = format!("{name}.{}", field.name());
                    if NEVER_ENCRYPTED.contains(&path.as_str()) {
                        continue;
                    }
                    let target = if path == RAW_HISTORY_FIELD {
                        history_blob_index
                    } else {
                        match Self::message_field_target(field).and_then(|t| index.get(t.as_str()).copied()) {
                            Some(target) => target,
                            None => continue,
                        }
                    };
                    let class = CLASSIFIED_FIELDS
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map_or("Always", |(_, class)| class);
                    write!(
                        fields,
                        "FieldRule {{ number: {}, target: {target}, class: FieldClass::{class} }}, ",
                        field.number()
                    )
                    .unwrap();
                    if field.number() < 64 {
                        rule_mask |= 1 << field.number();
                    }
                }
            }
            writeln!(
                out,
                "    MessageSchema {{ name: {name:?}, kind: {kind}, rule_mask: {rule_mask:#x}, fields: &[{fields}] }},"
            )
            .unwrap();
        }
        let history = index[HISTORY];
        writeln!(
            out,
            "    MessageSchema {{ name: \"temporal.api.common.v1.DataBlob\", kind: MessageKind::HistoryBlob {{ history: {history} }}, rule_mask: 0, fields: &[] }},"
        )
        .unwrap();
        writeln!(out, "];").unwrap();

        writeln!(out, "pub static PAYLOAD_FREE_MESSAGES: &[&str] = &[").unwrap();
        for name in self.messages.keys().filter(|name| !reaching.contains(*name)) {
            writeln!(out, "    {name:?},").unwrap();
        }
        writeln!(out, "];").unwrap();

        writeln!(out, "pub const PAYLOAD_TYPE: MessageIndex = {};", index[PAYLOAD]).unwrap();
        writeln!(
            out,
            "pub const PAYLOADS_TYPE: MessageIndex = {};",
            index["temporal.api.common.v1.Payloads"]
        )
        .unwrap();
        writeln!(out, "pub const FAILURE_TYPE: MessageIndex = {};", index[FAILURE]).unwrap();

        writeln!(out, "pub static METHODS: &[MethodSchema] = &[").unwrap();
        for method in &self.methods {
            // Payloads are rewritten message by message only for unary calls; a streaming
            // RPC that carries payloads needs the streaming rewrite path before it can ship.
            let streams_payloads = (method.client_streaming && index.contains_key(method.request.as_str()))
                || (method.server_streaming && index.contains_key(method.response.as_str()));
            assert!(
                !streams_payloads,
                "{} streams messages that carry payloads; the proxy rewrites only unary messages",
                method.path
            );
            let lookup = |t: &str| index.get(t).map_or("None".to_owned(), |i| format!("Some({i})"));
            let namespace_field = self
                .messages
                .get(&method.request)
                .and_then(|m| {
                    m.field
                        .iter()
                        .find(|f| f.name() == "namespace" && f.r#type() == Type::String && f.label() != Label::Repeated)
                })
                .map_or("None".to_owned(), |f| format!("Some({})", f.number()));
            writeln!(
                out,
                "    MethodSchema {{ path: {:?}, request: {}, response: {}, client_streaming: {}, server_streaming: {}, namespace_field: {namespace_field} }},",
                method.path,
                lookup(&method.request),
                lookup(&method.response),
                method.client_streaming,
                method.server_streaming,
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
        out
    }

    fn field_number(&self, message: &str, field: &str) -> i32 {
        self.messages[message]
            .field
            .iter()
            .find(|f| f.name() == field)
            .unwrap_or_else(|| panic!("{message} has no field {field}"))
            .number()
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
