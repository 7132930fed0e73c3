//! Writes starting corpora for the fuzz targets to fuzz/corpus/ (`cargo run --example seeds`).

use std::fs;
use std::io;
use std::path::Path;

use prost::Message as _;
use temporal_codec_proxy::payload::schema::{MessageIndex, MessageKind, Schema};
use temporal_codec_proxy::payload::wire::write_len_field;
use temporal_codec_proxy::proxy::grpc_frame::{encode_frame, encode_frame_gzip};
use temporalio_protos::temporal::api::command::v1::ScheduleNexusOperationCommandAttributes;
use temporalio_protos::temporal::api::common::v1::{Header, Memo, Payload, Payloads, SearchAttributes};
use temporalio_protos::temporal::api::sdk::v1::UserMetadata;
use temporalio_protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;

/// Nesting depth of synthesized messages: enough to reach payloads through a few levels,
/// small enough that the seeds stay short and quick to mutate.
const SYNTH_DEPTH: usize = 3;

fn main() -> io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let walker = corpus.join("walker");
    let frames = corpus.join("grpc_frames");
    fs::create_dir_all(&walker)?;
    fs::create_dir_all(&frames)?;

    // One message of every type in the table, with its payload paths populated.
    for (index, message) in Schema::compiled_in().messages().iter().enumerate() {
        let index = MessageIndex::try_from(index).expect("the table is indexed by MessageIndex");
        let body = synthesize(index, &mut Vec::new());
        fs::write(walker.join(&message.name), walker_input(index, &body))?;
    }

    // Real SDK-shaped messages: a workflow start with input, memo, header, search attribute
    // and user metadata payloads, the same
    // start encrypted under the targets' key (so decryption succeeds and can be mutated),
    // and a system Nexus envelope whose endpoint comes after its input.
    let start_type = type_of("temporal.api.workflowservice.v1.StartWorkflowExecutionRequest");
    let start = start_request().encode_to_vec();
    let encrypted_start = temporal_codec_proxy_fuzz::codec()
        .encode(start_type, &start)
        .expect("the start request encodes");
    fs::write(walker.join("start"), walker_input(start_type, &start))?;
    fs::write(
        walker.join("start-encrypted"),
        walker_input(start_type, &encrypted_start),
    )?;
    let nexus_type = type_of("temporal.api.command.v1.ScheduleNexusOperationCommandAttributes");
    fs::write(
        walker.join("nexus-system"),
        walker_input(nexus_type, &system_nexus_command()),
    )?;

    fs::write(frames.join("identity"), encode_frame(&start))?;
    fs::write(frames.join("gzip"), encode_frame_gzip(&start))?;
    fs::write(frames.join("empty-message"), encode_frame(&[]))?;
    let mut two = encode_frame_gzip(&encrypted_start).to_vec();
    two.extend_from_slice(&encode_frame(&start));
    fs::write(frames.join("gzip-then-identity"), two)?;

    println!("wrote seeds to {}", corpus.display());
    Ok(())
}

/// The walker target's input: the message type as two little-endian bytes, then the message.
fn walker_input(message_type: MessageIndex, message: &[u8]) -> Vec<u8> {
    let mut input = message_type.to_le_bytes().to_vec();
    input.extend_from_slice(message);
    input
}

fn type_of(name: &str) -> MessageIndex {
    Schema::compiled_in().message_by_name(name).unwrap_or_else(|| panic!("{name} is in the schema table"))
}

/// A message of `message_type` with its payload paths populated, each type at most once
/// along a path so recursive types end.
fn synthesize(message_type: MessageIndex, path: &mut Vec<MessageIndex>) -> Vec<u8> {
    let message = Schema::compiled_in().message(message_type);
    let mut out = Vec::new();
    match message.kind {
        MessageKind::Payload => out = json("\"seed\"").encode_to_vec(),
        MessageKind::Any => {
            let payloads = synthesize(Schema::compiled_in().payloads_type, path);
            write_len_field(&mut out, 1, b"type.googleapis.com/temporal.api.common.v1.Payloads");
            write_len_field(&mut out, 2, &payloads);
        }
        MessageKind::HistoryBlob { history } => {
            // encoding = PROTO3 (field 1, varint 1): only then is the blob walked as a History.
            out.extend_from_slice(&[0x08, 0x01]);
            let history = synthesize(history, path);
            write_len_field(&mut out, 2, &history);
        }
        MessageKind::NexusFailure {
            metadata_field,
            details_field,
        } => {
            let mut entry = Vec::new();
            write_len_field(&mut entry, 1, b"type");
            write_len_field(&mut entry, 2, b"temporal.api.failure.v1.Failure");
            write_len_field(&mut out, metadata_field, &entry);
            write_len_field(&mut out, details_field, NEXUS_FAILURE_DETAILS);
        }
        MessageKind::Fields | MessageKind::NexusCommand { .. } | MessageKind::Failure { .. } => {
            // Failures start with texts to move into encrypted attributes.
            if let MessageKind::Failure {
                message_field,
                stack_trace_field,
                ..
            } = message.kind
            {
                write_len_field(&mut out, message_field, b"seed failure");
                write_len_field(&mut out, stack_trace_field, b"at seed()");
            }
            path.push(message_type);
            for rule in &message.fields {
                if path.len() > SYNTH_DEPTH || (path.contains(&rule.target) && rule.target != Schema::compiled_in().payload_type) {
                    continue;
                }
                let child = synthesize(rule.target, path);
                write_len_field(&mut out, rule.number, &child);
            }
            path.pop();
        }
    }
    out
}

/// A Temporal failure in protojson, as the deprecated Nexus failure form carries it: one
/// `json/plain` payload `"seed"` in its application failure details.
const NEXUS_FAILURE_DETAILS: &[u8] = br#"{"message":"seed","applicationFailureInfo":{"details":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"InNlZWQi"}]}}}"#;

fn json(text: &str) -> Payload {
    Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: text.as_bytes().to_vec(),
        external_payloads: vec![],
    }
}

fn start_request() -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: "order-42".into(),
        input: Some(Payloads {
            payloads: vec![json("\"input\""), json("{\"amount\":7}")],
        }),
        memo: Some(Memo {
            fields: [("note".to_owned(), json("\"memo\""))].into(),
        }),
        header: Some(Header {
            fields: [("trace".to_owned(), json("\"header\""))].into(),
        }),
        search_attributes: Some(SearchAttributes {
            indexed_fields: [("CustomerId".to_owned(), json("\"customer-7\""))].into(),
        }),
        user_metadata: Some(UserMetadata {
            summary: Some(json("\"summary\"")),
            details: Some(json("\"details\"")),
        }),
        ..Default::default()
    }
}

/// A Nexus command to the system endpoint: its input stays a readable envelope and only the
/// payloads of the message inside it are encrypted.
fn system_nexus_command() -> Vec<u8> {
    let envelope = Payload {
        metadata: [
            ("encoding".to_owned(), b"binary/protobuf".to_vec()),
            ("messageType".to_owned(), b"temporal.api.common.v1.Payloads".to_vec()),
        ]
        .into(),
        data: Payloads {
            payloads: vec![json("\"inner\"")],
        }
        .encode_to_vec(),
        external_payloads: vec![],
    };
    let input_first = ScheduleNexusOperationCommandAttributes {
        input: Some(envelope),
        ..Default::default()
    };
    let mut message = input_first.encode_to_vec();
    write_len_field(&mut message, 1, b"__temporal_system");
    message
}
