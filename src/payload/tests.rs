//! Walker tests over the whole compiled-in payload schema and against malformed input.

use prost::Message as _;
use temporalio_protos::temporal::api::common::v1::{Header, Memo, Payload, Payloads, SearchAttributes};
use temporalio_protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;
use zeroize::Zeroizing;

use super::schema::{MessageIndex, MessageKind, Schema};
use super::wire::{WIRE_LEN, WIRE_VARINT, write_len_field, write_tag, write_varint};
use super::*;
use crate::codec::{Codec, EncryptionPolicy, Keyring};

const MARKER: &[u8] = b"plaintext-marker";
/// Nesting depth of synthesized messages; deep enough to reach every payload path once.
const SYNTH_DEPTH: usize = 7;
const UNKNOWN_VARINT_FIELD: u32 = 19_999;
const UNKNOWN_LEN_FIELD: u32 = 20_000;

fn api() -> &'static Schema {
    Schema::compiled_in()
}

fn codec(policy: EncryptionPolicy) -> Codec {
    let keyring = Keyring::new([("test".to_owned(), Zeroizing::new(vec![3u8; 32]))]).unwrap();
    Codec::new(keyring, policy)
}

fn encrypt_everything() -> EncryptionPolicy {
    EncryptionPolicy {
        headers: true,
        user_metadata: true,
        operator_data: true,
        failure_messages: true,
    }
}

/// Builds a message of `message_type` with every payload path populated (each type at
/// most once along a path), plus unknown fields the walker must carry through.
fn synthesize(message_type: MessageIndex, path: &mut Vec<MessageIndex>, counter: &mut usize) -> Vec<u8> {
    let mut out = Vec::new();
    let schema = api().message(message_type);
    match schema.kind {
        MessageKind::Payload => {
            *counter += 1;
            let payload = Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: format!("\"{}-{counter}\"", String::from_utf8_lossy(MARKER)).into_bytes(),
                external_payloads: vec![],
            };
            out = payload.encode_to_vec();
        }
        MessageKind::Any => {
            let payloads = synthesize(api().payloads_type, path, counter);
            write_len_field(&mut out, 1, b"type.googleapis.com/temporal.api.common.v1.Payloads");
            write_len_field(&mut out, 2, &payloads);
        }
        MessageKind::NexusFailure {
            metadata_field,
            details_field,
        } => {
            write_map_entry(&mut out, metadata_field, b"type", b"temporal.api.failure.v1.Failure");
            *counter += 1;
            let details =
                failure_texts::temporal_failure_with_payload(&format!("{}-{counter}", String::from_utf8_lossy(MARKER)));
            write_len_field(&mut out, details_field, &serde_json::to_vec(&details).unwrap());
            path.push(message_type);
            for rule in &schema.fields {
                if !path.contains(&rule.target) && path.len() <= SYNTH_DEPTH {
                    let child = synthesize(rule.target, path, counter);
                    write_len_field(&mut out, rule.number, &child);
                }
            }
            path.pop();
        }
        MessageKind::HistoryBlob { history } => {
            write_tag(&mut out, 1, WIRE_VARINT);
            write_varint(&mut out, 1);
            let history = synthesize(history, path, counter);
            write_len_field(&mut out, 2, &history);
        }
        MessageKind::Fields | MessageKind::NexusCommand { .. } | MessageKind::Failure { .. } => {
            // A failure carries its texts instead of encoded attributes, as SDKs send it by default.
            let mut skipped_field = None;
            if let MessageKind::Failure {
                message_field,
                stack_trace_field,
                encoded_attributes_field,
            } = schema.kind
            {
                let marker = String::from_utf8_lossy(MARKER);
                write_len_field(&mut out, message_field, format!("{marker} failed: \"ü\"").as_bytes());
                write_len_field(
                    &mut out,
                    stack_trace_field,
                    format!("at {marker}\n\tat main").as_bytes(),
                );
                skipped_field = Some(encoded_attributes_field);
            }
            path.push(message_type);
            for rule in &schema.fields {
                if path.len() > SYNTH_DEPTH
                    || (path.contains(&rule.target) && rule.target != api().payload_type)
                    || skipped_field == Some(rule.number)
                {
                    continue;
                }
                let child = synthesize(rule.target, path, counter);
                write_len_field(&mut out, rule.number, &child);
            }
            path.pop();
        }
    }
    write_tag(&mut out, UNKNOWN_VARINT_FIELD, WIRE_VARINT);
    write_varint(&mut out, 42);
    write_len_field(&mut out, UNKNOWN_LEN_FIELD, b"from a newer server");
    out
}

fn write_map_entry(out: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) {
    let mut entry = Vec::new();
    write_len_field(&mut entry, 1, key);
    write_len_field(&mut entry, 2, value);
    write_len_field(out, field, &entry);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn every_message_type_round_trips_with_no_plaintext_left() {
    let codec = codec(encrypt_everything());
    let mut checked = 0;
    for (index, schema) in api().messages().iter().enumerate() {
        let index = index as MessageIndex;
        let mut counter = 0;
        let original = synthesize(index, &mut Vec::new(), &mut counter);
        assert!(counter > 0, "{} has no payload path", schema.name);
        let encrypted = codec
            .encode(index, &original)
            .unwrap_or_else(|e| panic!("{}: {e}", schema.name));
        assert!(
            !contains(&encrypted, MARKER),
            "{}: plaintext left after encoding",
            schema.name
        );
        if schema.kind != MessageKind::Payload {
            assert!(
                contains(&encrypted, b"from a newer server"),
                "{}: unknown field lost",
                schema.name
            );
        }
        let decrypted = codec
            .decode(index, &encrypted)
            .unwrap_or_else(|e| panic!("{}: {e}", schema.name));
        assert_eq!(decrypted, original, "{}: round trip changed bytes", schema.name);
        checked += 1;
    }
    assert!(checked > 250, "only {checked} message types in the table");
}

#[test]
fn default_policy_leaves_operator_data_plaintext_and_encrypts_headers() {
    let codec = codec(EncryptionPolicy::default());
    for name in [
        "temporal.api.nexus.v1.EndpointSpec",
        "temporal.api.deployment.v1.VersionMetadata",
    ] {
        let index = api().message_by_name(name).unwrap();
        let original = synthesize(index, &mut Vec::new(), &mut 0);
        assert_eq!(codec.encode(index, &original).unwrap(), original, "{name}");
    }
    let header = api().message_by_name("temporal.api.common.v1.Header").unwrap();
    let original = synthesize(header, &mut Vec::new(), &mut 0);
    assert!(!contains(&codec.encode(header, &original).unwrap(), MARKER));
}

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
        workflow_id: "wf".into(),
        input: Some(Payloads {
            payloads: vec![json("\"secret-input\"")],
        }),
        memo: Some(Memo {
            fields: [("note".to_owned(), json("\"secret-memo\""))].into(),
        }),
        header: Some(Header {
            fields: [("trace".to_owned(), json("\"secret-header\""))].into(),
        }),
        search_attributes: Some(SearchAttributes {
            indexed_fields: [("CustomerId".to_owned(), json("\"customer-7\""))].into(),
        }),
        ..Default::default()
    }
}

#[test]
fn start_request_encrypts_user_data_and_keeps_search_attributes_plaintext() {
    let codec = codec(EncryptionPolicy::default());
    let request_type = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .unwrap()
        .request
        .unwrap();
    let original = start_request();
    let encrypted = codec.encode(request_type, &original.encode_to_vec()).unwrap();
    let seen = StartWorkflowExecutionRequest::decode(encrypted.as_slice()).unwrap();
    let encrypted_payloads = [
        &seen.input.as_ref().unwrap().payloads[0],
        &seen.memo.as_ref().unwrap().fields["note"],
        &seen.header.as_ref().unwrap().fields["trace"],
    ];
    for payload in encrypted_payloads {
        assert_eq!(payload.metadata["encoding"], b"binary/encrypted");
        assert_eq!(payload.metadata["encryption-key-id"], b"test");
    }
    assert_eq!(seen.search_attributes, original.search_attributes);
    assert_eq!(seen.workflow_id, "wf");
    assert!(!contains(&encrypted, b"secret-"));
    let decrypted = codec.decode(request_type, &encrypted).unwrap();
    assert_eq!(
        StartWorkflowExecutionRequest::decode(decrypted.as_slice()).unwrap(),
        original
    );
}

#[test]
fn headers_stay_plaintext_when_switched_off() {
    let codec = codec(EncryptionPolicy {
        headers: false,
        ..EncryptionPolicy::default()
    });
    let request_type = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .unwrap()
        .request
        .unwrap();
    let original = start_request();
    let seen = StartWorkflowExecutionRequest::decode(
        codec
            .encode(request_type, &original.encode_to_vec())
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(seen.header, original.header);
    assert_eq!(
        seen.input.unwrap().payloads[0].metadata["encoding"],
        b"binary/encrypted"
    );
}

#[test]
fn user_metadata_summary_over_the_server_limit_fails_instead_of_going_plaintext() {
    use temporalio_protos::temporal::api::sdk::v1::UserMetadata;
    let codec = codec(EncryptionPolicy::default());
    let index = api().message_by_name("temporal.api.sdk.v1.UserMetadata").unwrap();
    let fits = UserMetadata {
        summary: Some(json(&"s".repeat(200))),
        details: None,
    };
    assert!(codec.encode(index, &fits.encode_to_vec()).is_ok());
    let near_limit = UserMetadata {
        summary: Some(json(&"s".repeat(370))),
        details: None,
    };
    let error = codec.encode(index, &near_limit.encode_to_vec()).unwrap_err();
    assert!(
        matches!(error, WalkError::UserMetadataTooLarge { limit: 400, .. }),
        "{error}"
    );
}

#[test]
fn system_nexus_envelope_stays_readable() {
    use temporalio_protos::temporal::api::command::v1::ScheduleNexusOperationCommandAttributes;
    let codec = codec(EncryptionPolicy::default());
    let index = api()
        .message_by_name("temporal.api.command.v1.ScheduleNexusOperationCommandAttributes")
        .unwrap();
    let inner = Payloads {
        payloads: vec![json("\"secret-inner\"")],
    };
    let mut envelope = json("");
    envelope.metadata = [
        ("encoding".to_owned(), b"binary/protobuf".to_vec()),
        ("messageType".to_owned(), b"temporal.api.common.v1.Payloads".to_vec()),
    ]
    .into();
    envelope.data = inner.encode_to_vec();
    // The endpoint comes after the input on the wire, which the walker must still honour.
    let mut message = Vec::new();
    write_len_field(&mut message, 4, &envelope.encode_to_vec());
    write_len_field(&mut message, 1, b"__temporal_system");
    let encrypted = codec.encode(index, &message).unwrap();
    let seen = ScheduleNexusOperationCommandAttributes::decode(encrypted.as_slice()).unwrap();
    let input = seen.input.unwrap();
    assert_eq!(input.metadata["encoding"], b"binary/protobuf");
    let inner_seen = Payloads::decode(input.data.as_slice()).unwrap();
    assert_eq!(inner_seen.payloads[0].metadata["encoding"], b"binary/encrypted");

    let user = ScheduleNexusOperationCommandAttributes {
        endpoint: "orders".into(),
        input: Some(json("\"secret-user\"")),
        ..Default::default()
    };
    let seen =
        ScheduleNexusOperationCommandAttributes::decode(codec.encode(index, &user.encode_to_vec()).unwrap().as_slice())
            .unwrap();
    assert_eq!(seen.input.unwrap().metadata["encoding"], b"binary/encrypted");
}

#[test]
fn payloads_inside_any_are_rewritten_and_unknown_any_types_are_refused_on_the_way_in_only() {
    let codec = codec(EncryptionPolicy::default());
    let any = api().message_by_name("google.protobuf.Any").unwrap();
    let payloads = Payloads {
        payloads: vec![json("\"secret-any\"")],
    };
    let mut known = Vec::new();
    // The value may come before the type URL.
    write_len_field(&mut known, 2, &payloads.encode_to_vec());
    write_len_field(&mut known, 1, b"type.googleapis.com/temporal.api.common.v1.Payloads");
    assert!(!contains(&codec.encode(any, &known).unwrap(), b"secret-any"));
    let mut unknown = Vec::new();
    write_len_field(&mut unknown, 1, b"type.googleapis.com/example.Unknown");
    write_len_field(&mut unknown, 2, &payloads.encode_to_vec());
    assert!(matches!(codec.encode(any, &unknown), Err(WalkError::Opaque(what)) if what.contains("example.Unknown")));
    assert_eq!(codec.decode(any, &unknown).unwrap(), unknown);
    // A type of the API that holds no payloads, and an empty Any, pass either way.
    let mut payload_free = Vec::new();
    write_len_field(
        &mut payload_free,
        1,
        b"type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure",
    );
    write_len_field(&mut payload_free, 2, b"\x0a\x06active");
    assert_eq!(codec.encode(any, &payload_free).unwrap(), payload_free);
    let mut empty = Vec::new();
    write_len_field(&mut empty, 1, b"type.googleapis.com/example.Unknown");
    assert_eq!(codec.encode(any, &empty).unwrap(), empty);
}

#[test]
fn a_system_envelope_of_an_unknown_message_type_is_refused_on_the_way_in() {
    let codec = codec(EncryptionPolicy::default());
    let envelope = Payload {
        metadata: [
            ("encoding".to_owned(), b"binary/protobuf".to_vec()),
            ("messageType".to_owned(), b"temporal.api.future.v1.NewRequest".to_vec()),
            ("__temporal_system_payload".to_owned(), b"true".to_vec()),
        ]
        .into(),
        data: json("\"secret-in-a-new-envelope\"").encode_to_vec(),
        external_payloads: vec![],
    };
    let payload = envelope.encode_to_vec();
    assert!(
        matches!(codec.encode(api().payload_type, &payload), Err(WalkError::Opaque(what)) if what.contains("NewRequest"))
    );
    assert_eq!(codec.decode(api().payload_type, &payload).unwrap(), payload);
}

#[test]
fn a_payload_labelled_encrypted_passes_unchanged_only_when_a_held_key_authenticates_it() {
    let codec = codec(EncryptionPolicy::default());
    let genuine = codec
        .encode(api().payload_type, &json("\"ours\"").encode_to_vec())
        .unwrap();
    assert_eq!(codec.encode(api().payload_type, &genuine).unwrap(), genuine);

    let other_team = Codec::new(
        Keyring::new([("other-team".to_owned(), Zeroizing::new(vec![9u8; 32]))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let foreign = other_team
        .encode(api().payload_type, &json("\"theirs\"").encode_to_vec())
        .unwrap();
    let disguised = Payload {
        metadata: [
            ("encoding".to_owned(), b"binary/encrypted".to_vec()),
            ("encryption-key-id".to_owned(), b"test".to_vec()),
        ]
        .into(),
        data: b"\"plaintext in disguise\"".to_vec(),
        external_payloads: vec![],
    }
    .encode_to_vec();
    let unlabelled_key = Payload {
        metadata: [("encoding".to_owned(), b"binary/encrypted".to_vec())].into(),
        data: b"\"no key id at all\"".to_vec(),
        external_payloads: vec![],
    }
    .encode_to_vec();
    for sent in [foreign, disguised, unlabelled_key] {
        let stored = codec.encode(api().payload_type, &sent).unwrap();
        assert_ne!(stored, sent);
        assert!(!contains(&stored, b"disguise") && !contains(&stored, b"no key id"));
        assert_eq!(
            Payload::decode(stored.as_slice()).unwrap().metadata["encryption-key-id"],
            b"test"
        );
        assert_eq!(
            codec.decode(api().payload_type, &stored).unwrap(),
            sent,
            "returned exactly as sent"
        );
    }
    assert_eq!(
        codec
            .stats()
            .payloads_encrypted_again
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let codec = codec(EncryptionPolicy::default());
    let request_type = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .unwrap()
        .request
        .unwrap();
    let valid = start_request().encode_to_vec();
    for cut in 1..valid.len() {
        // Every prefix either parses (cut at a field boundary) or is a clean error.
        let _ = codec.encode(request_type, &valid[..cut]);
    }
    let cases: &[&[u8]] = &[
        &[0x80],                   // truncated varint
        &[0x00, 0x01],             // field number 0
        &[0x0f],                   // wire type 7
        &[0x0c],                   // end group without start
        &[0x0b, 0x08, 0x01],       // unterminated group
        &[0x22, 0x05, 0x01],       // length past the end
        &[0x2a, 0x02, 0x0a, 0x07], // nested length past the end (in input, field 5)
        &[0x28, 0x01],             // input (field 5) as a varint
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ];
    for case in cases {
        assert!(
            matches!(codec.encode(request_type, case), Err(WalkError::Malformed(_))),
            "{case:02x?}"
        );
    }
}

/// A `Failure` chain of `links` failures, each the `cause` of the one before, the innermost
/// carrying a message (which encryption moves into a payload one level further down).
fn failure_chain(links: usize) -> (MessageIndex, Vec<u8>) {
    let innermost = temporalio_protos::temporal::api::failure::v1::Failure {
        message: "innermost".into(),
        ..Default::default()
    }
    .encode_to_vec();
    (api().failure_type, wrapped_in_causes(innermost, links - 1))
}

/// `failure` as the cause of `levels` failures around it.
fn wrapped_in_causes(mut failure: Vec<u8>, levels: usize) -> Vec<u8> {
    let cause_field = api()
        .message(api().failure_type)
        .fields
        .iter()
        .find(|rule| rule.target == api().failure_type)
        .unwrap()
        .number;
    for _ in 0..levels {
        let mut outer = Vec::new();
        write_len_field(&mut outer, cause_field, &failure);
        failure = outer;
    }
    failure
}

#[test]
fn requests_are_refused_past_their_depth_limit_and_responses_read_deeper() {
    let codec = codec(EncryptionPolicy::default());
    // The chain's root is at depth 0 and its innermost failure at `links - 1`; that one's
    // concealed message is a payload one level below.
    let at_limit = walker::REQUEST_MAX_DEPTH as usize;
    let (failure, message) = failure_chain(at_limit);
    let encrypted = codec.encode(failure, &message).unwrap();
    let (_, too_deep) = failure_chain(at_limit + 1);
    assert!(matches!(
        codec.encode(failure, &too_deep),
        Err(WalkError::TooDeep { limit }) if limit == walker::REQUEST_MAX_DEPTH
    ));
    // What a request stored comes back inside a deeper envelope, and is still read.
    let envelope = (walker::RESPONSE_MAX_DEPTH - walker::REQUEST_MAX_DEPTH - 1) as usize;
    codec.decode(failure, &wrapped_in_causes(encrypted, envelope)).unwrap();
    let (_, far_too_deep) = failure_chain(200);
    assert!(matches!(
        codec.decode(failure, &far_too_deep),
        Err(WalkError::TooDeep { .. })
    ));
}

#[test]
fn walks_at_the_depth_limits_fit_a_two_mebibyte_thread_stack() {
    // tokio's worker and blocking threads have 2 MiB stacks; this build's frames (debug
    // too) must fit the deepest walk the limits allow.
    let walked = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let codec = codec(EncryptionPolicy::default());
            let (failure, request) = failure_chain(walker::REQUEST_MAX_DEPTH as usize);
            let encrypted = codec.encode(failure, &request).unwrap();
            let (_, response) = failure_chain(walker::RESPONSE_MAX_DEPTH as usize + 1);
            codec.decode(failure, &response).unwrap();
            codec.decode(failure, &encrypted).unwrap()
        })
        .unwrap()
        .join();
    assert!(walked.is_ok());
}

#[test]
fn a_message_that_grows_past_the_limit_once_encrypted_stops_the_walk() {
    let request_type = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .unwrap()
        .request
        .unwrap();
    let tiny = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: b"1".to_vec(),
        external_payloads: vec![],
    };
    let request = StartWorkflowExecutionRequest {
        input: Some(Payloads {
            payloads: vec![tiny; 2000],
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let unlimited = codec(EncryptionPolicy::default())
        .encode(request_type, &request)
        .unwrap();
    assert!(
        unlimited.len() > 3 * request.len(),
        "{} -> {}",
        request.len(),
        unlimited.len()
    );
    let limit = 2 * request.len();
    let limited = codec(EncryptionPolicy::default()).with_message_limit(limit);
    assert!(matches!(
        limited.encode(request_type, &request),
        Err(WalkError::TooLarge { limit: refused }) if refused == limit
    ));
    let roomy = codec(EncryptionPolicy::default()).with_message_limit(unlimited.len());
    assert_eq!(roomy.encode(request_type, &request).unwrap().len(), unlimited.len());
}

#[test]
fn unknown_groups_and_repeated_singular_fields_survive() {
    let codec = codec(EncryptionPolicy::default());
    let request_type = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .unwrap()
        .request
        .unwrap();
    let input = Payloads {
        payloads: vec![json("\"secret-a\"")],
    }
    .encode_to_vec();
    let mut message = Vec::new();
    write_len_field(&mut message, 5, &input);
    // An unknown group (field 30) holding a nested group and a varint.
    message.extend_from_slice(&[0xf3, 0x01, 0x08, 0x01, 0xfb, 0x01, 0xfc, 0x01, 0xf4, 0x01]);
    write_len_field(&mut message, 5, &input);
    write_tag(&mut message, 3, WIRE_LEN);
    write_varint(&mut message, 0);
    let encrypted = codec.encode(request_type, &message).unwrap();
    assert!(!contains(&encrypted, b"secret-a"));
    assert!(contains(
        &encrypted,
        &[0xf3, 0x01, 0x08, 0x01, 0xfb, 0x01, 0xfc, 0x01, 0xf4, 0x01]
    ));
    assert!(encrypted.ends_with(&[0x1a, 0x00]), "present-but-empty field kept");
    assert_eq!(codec.decode(request_type, &encrypted).unwrap(), message);
}

#[test]
fn every_rpc_has_an_entry_and_the_payload_rpcs_are_found() {
    assert!(api().methods().len() > 200);
    let with_payloads = api()
        .methods()
        .iter()
        .filter(|m| m.path.starts_with("/temporal.api.workflowservice.v1.WorkflowService/"))
        .filter(|m| m.request.is_some() || m.response.is_some())
        .count();
    assert!(with_payloads >= 54, "{with_payloads}");
    for rpc in [
        "StartWorkflowExecution",
        "SignalWorkflowExecution",
        "SignalWithStartWorkflowExecution",
        "QueryWorkflow",
        "UpdateWorkflowExecution",
        "PollWorkflowExecutionUpdate",
        "ExecuteMultiOperation",
        "PollWorkflowTaskQueue",
        "RespondWorkflowTaskCompleted",
        "RespondQueryTaskCompleted",
        "PollActivityTaskQueue",
        "RecordActivityTaskHeartbeat",
        "RespondActivityTaskCompleted",
        "RespondActivityTaskFailed",
        "GetWorkflowExecutionHistory",
        "GetWorkflowExecutionHistoryReverse",
        "DescribeWorkflowExecution",
        "ListWorkflowExecutions",
        "CreateSchedule",
        "DescribeSchedule",
    ] {
        let method = api()
            .method(&format!("/temporal.api.workflowservice.v1.WorkflowService/{rpc}"))
            .unwrap();
        assert!(method.request.is_some() || method.response.is_some(), "{rpc}");
    }
    let poll = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue")
        .unwrap();
    assert!(poll.response.is_some());
    let health = api().method("/grpc.health.v1.Health/Watch").unwrap();
    assert!(health.server_streaming && health.request.is_none() && health.response.is_none());
    let heartbeat = api()
        .method("/temporal.api.workflowservice.v1.WorkflowService/RecordActivityTaskHeartbeatById")
        .unwrap();
    assert_eq!(heartbeat.namespace_field, Some(1));
}

#[test]
fn non_minimal_varints_survive_byte_for_byte() {
    let codec = codec(encrypt_everything());
    let payloads = api().payloads_type;
    // Found by fuzzing: a two-byte tag, and a two-byte length, around a payload the walk
    // leaves as it is (on the way in, ciphertext a held key authenticates; on the way out,
    // plaintext).
    let padded = |tag: &[u8], payload: &[u8]| {
        let mut message = tag.to_vec();
        let mut length = Vec::new();
        write_varint(&mut length, payload.len() as u64);
        *length.last_mut().unwrap() |= 0x80;
        length.push(0x00);
        message.extend_from_slice(&length);
        message.extend_from_slice(payload);
        message
    };
    let genuine = codec
        .encode(api().payload_type, &json("\"sealed\"").encode_to_vec())
        .unwrap();
    let plain = json("\"plain\"").encode_to_vec();
    for tag in [&[0x8a, 0x00][..], &[0x0a][..]] {
        let sealed = padded(tag, &genuine);
        assert_eq!(codec.encode(payloads, &sealed).unwrap(), sealed, "{sealed:02x?}");
        let readable = padded(tag, &plain);
        assert_eq!(codec.decode(payloads, &readable).unwrap(), readable, "{readable:02x?}");
    }
    // Around a payload that is encrypted, the tag keeps its bytes; the length of rewritten
    // content is written anew, minimally.
    let payload = json("\"secret-varint\"").encode_to_vec();
    let mut message = vec![0x8a, 0x00, payload.len() as u8 | 0x80, 0x00];
    message.extend_from_slice(&payload);
    let encoded = codec.encode(payloads, &message).unwrap();
    assert!(!contains(&encoded, b"secret-varint"));
    assert_eq!(&encoded[..2], &[0x8a, 0x00]);
    let mut minimal = vec![0x8a, 0x00, payload.len() as u8];
    minimal.extend_from_slice(&payload);
    assert_eq!(codec.decode(payloads, &encoded).unwrap(), minimal);
}

mod failure_texts {
    use temporalio_protos::temporal::api::failure::v1::failure::FailureInfo;
    use temporalio_protos::temporal::api::failure::v1::{ApplicationFailureInfo, Failure};
    use temporalio_protos::temporal::api::workflowservice::v1::RespondActivityTaskFailedRequest;

    use super::*;

    const REQUEST: &str = "temporal.api.workflowservice.v1.RespondActivityTaskFailedRequest";

    fn failed_activity(failure: Failure) -> Vec<u8> {
        RespondActivityTaskFailedRequest {
            task_token: b"token".to_vec(),
            failure: Some(failure),
            identity: "worker@host".to_owned(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn failure_of(request: &[u8]) -> Failure {
        RespondActivityTaskFailedRequest::decode(request)
            .unwrap()
            .failure
            .unwrap()
    }

    fn card_declined() -> Failure {
        Failure {
            message: "card 4111 declined for ada@example.com".to_owned(),
            source: "PythonSDK".to_owned(),
            stack_trace: "File \"billing.py\", line 7, in charge(\"4111\")".to_owned(),
            cause: Some(Box::new(Failure {
                message: "gateway said: insufficient funds on 4111".to_owned(),
                ..Default::default()
            })),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(ApplicationFailureInfo {
                r#type: "CardDeclined".to_owned(),
                non_retryable: true,
                details: Some(Payloads {
                    payloads: vec![json("{\"last4\":\"4111\"}")],
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn messages_and_stack_traces_travel_encrypted_and_come_back_exactly() {
        let codec = codec(EncryptionPolicy::default());
        let request = api().message_by_name(REQUEST).unwrap();
        let original = failed_activity(card_declined());

        let encrypted = codec.encode(request, &original).unwrap();
        assert!(!contains(&encrypted, b"4111"), "failure text left in plaintext");
        let stored = failure_of(&encrypted);
        assert_eq!(stored.message, "Encoded failure");
        assert_eq!(stored.stack_trace, "");
        assert_eq!(stored.source, "PythonSDK");
        let attributes = stored.encoded_attributes.unwrap();
        assert_eq!(attributes.metadata["encoding"], b"binary/encrypted");
        let cause = stored.cause.unwrap();
        assert_eq!(cause.message, "Encoded failure");
        assert!(cause.encoded_attributes.is_some());
        match stored.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) => assert_eq!(info.r#type, "CardDeclined"),
            other => panic!("failure info changed: {other:?}"),
        }

        assert_eq!(codec.decode(request, &encrypted).unwrap(), original);
    }

    #[test]
    fn switched_off_the_texts_stay_where_they_are() {
        let codec = codec(EncryptionPolicy {
            failure_messages: false,
            ..EncryptionPolicy::default()
        });
        let request = api().message_by_name(REQUEST).unwrap();
        let original = failed_activity(card_declined());
        let stored = failure_of(&codec.encode(request, &original).unwrap());
        assert_eq!(stored.message, card_declined().message);
        assert_eq!(stored.stack_trace, card_declined().stack_trace);
        assert!(stored.encoded_attributes.is_none());
    }

    #[test]
    fn attributes_an_sdk_encoded_itself_are_encrypted_once_and_read_back() {
        let codec = codec(EncryptionPolicy::default());
        let request = api().message_by_name(REQUEST).unwrap();
        let original = failed_activity(Failure {
            message: "Encoded failure".to_owned(),
            encoded_attributes: Some(json(r#"{"message":"no stock for sku-7","stack_trace":"at pick()"}"#)),
            ..Default::default()
        });

        let encrypted = codec.encode(request, &original).unwrap();
        assert!(!contains(&encrypted, b"sku-7"));
        let stored = failure_of(&encrypted);
        assert_eq!(stored.message, "Encoded failure");
        assert_eq!(
            stored.encoded_attributes.unwrap().metadata["encoding"],
            b"binary/encrypted"
        );

        let read = failure_of(&codec.decode(request, &encrypted).unwrap());
        assert_eq!(read.message, "no stock for sku-7");
        assert_eq!(read.stack_trace, "at pick()");
        assert!(read.encoded_attributes.is_none());
    }

    #[test]
    fn attributes_under_a_key_not_held_are_left_encoded() {
        let request = api().message_by_name(REQUEST).unwrap();
        let encrypted = codec(EncryptionPolicy::default())
            .encode(request, &failed_activity(card_declined()))
            .unwrap();
        let other = Keyring::new([("other".to_owned(), Zeroizing::new(vec![9u8; 32]))]).unwrap();
        let other = Codec::new(other, EncryptionPolicy::default());
        assert_eq!(other.decode(request, &encrypted).unwrap(), encrypted);
    }

    /// A Temporal failure whose message is `text` and whose details hold a payload of `text`.
    pub(super) fn temporal_failure_with_payload(text: &str) -> Failure {
        Failure {
            message: text.to_owned(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(ApplicationFailureInfo {
                r#type: "NexusRejected".to_owned(),
                details: Some(Payloads {
                    payloads: vec![json(&format!("\"{text}\""))],
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    // Older SDKs still send the deprecated `error` field, which is the form covered here.
    #[allow(deprecated)]
    fn nexus_failure_details_in_json_are_encrypted_inside_the_json() {
        use temporalio_protos::temporal::api::nexus::v1::{Failure as NexusFailure, HandlerError};
        use temporalio_protos::temporal::api::workflowservice::v1::RespondNexusTaskFailedRequest;

        let codec = codec(EncryptionPolicy::default());
        let request = api()
            .message_by_name("temporal.api.workflowservice.v1.RespondNexusTaskFailedRequest")
            .unwrap();
        let inner = temporal_failure_with_payload("order 77 for ada@example.com");
        let original = RespondNexusTaskFailedRequest {
            namespace: "default".to_owned(),
            error: Some(HandlerError {
                error_type: "BAD_REQUEST".to_owned(),
                failure: Some(NexusFailure {
                    message: "handler failed".to_owned(),
                    metadata: [("type".to_owned(), "temporal.api.failure.v1.Failure".to_owned())].into(),
                    details: serde_json::to_vec(&inner).unwrap(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();

        let encrypted = codec.encode(request, &original).unwrap();
        let sent = RespondNexusTaskFailedRequest::decode(encrypted.as_slice()).unwrap();
        let details = sent.error.unwrap().failure.unwrap().details;
        assert!(!contains(&details, b"ada@example.com"), "failure message left readable");
        let stored: Failure = serde_json::from_slice(&details).unwrap();
        assert_eq!(stored.message, "Encoded failure");
        match stored.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) => {
                let payload = &info.details.unwrap().payloads[0];
                assert_eq!(payload.metadata["encoding"], b"binary/encrypted");
            }
            other => panic!("failure info lost: {other:?}"),
        }

        assert_eq!(codec.decode(request, &encrypted).unwrap(), original);
    }

    #[test]
    fn attributes_that_are_not_only_the_texts_are_kept_as_a_payload() {
        let codec = codec(EncryptionPolicy::default());
        let request = api().message_by_name(REQUEST).unwrap();
        let original = failed_activity(Failure {
            message: "Encoded failure".to_owned(),
            encoded_attributes: Some(json(r#"{"message":"m","extra":1}"#)),
            ..Default::default()
        });
        let decoded = codec
            .decode(request, &codec.encode(request, &original).unwrap())
            .unwrap();
        assert_eq!(decoded, original);
    }
}

#[test]
fn raw_history_blobs_in_json_are_rewritten_inside_the_json() {
    use temporalio_protos::temporal::api::common::v1::DataBlob;
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes;
    use temporalio_protos::temporal::api::history::v1::{
        History, HistoryEvent, WorkflowExecutionStartedEventAttributes,
    };
    use temporalio_protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryResponse;

    let codec = codec(EncryptionPolicy::default());
    let response = api()
        .message_by_name("temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryResponse")
        .unwrap();
    let history = History {
        events: vec![HistoryEvent {
            event_id: 1,
            attributes: Some(Attributes::WorkflowExecutionStartedEventAttributes(
                WorkflowExecutionStartedEventAttributes {
                    input: Some(Payloads {
                        payloads: vec![json("\"json-blob-secret\"")],
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
    };
    let original = GetWorkflowExecutionHistoryResponse {
        raw_history: vec![DataBlob {
            encoding_type: 2,
            data: serde_json::to_vec(&history).unwrap(),
        }],
        ..Default::default()
    }
    .encode_to_vec();

    let encrypted = codec.encode(response, &original).unwrap();
    let blob = &GetWorkflowExecutionHistoryResponse::decode(encrypted.as_slice())
        .unwrap()
        .raw_history[0];
    let stored: History = serde_json::from_slice(&blob.data).unwrap();
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) = &stored.events[0].attributes else {
        panic!("event changed type")
    };
    assert_eq!(
        started.input.as_ref().unwrap().payloads[0].metadata["encoding"],
        b"binary/encrypted"
    );
    assert_eq!(codec.decode(response, &encrypted).unwrap(), original);
}

mod descriptor_sets {
    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{FieldDescriptorProto, FileDescriptorSet, MethodDescriptorProto};
    use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};

    use super::super::schema::{COMPILED_IN_DESCRIPTORS, Schema};
    use super::super::wire::write_len_field;
    use super::super::*;
    use super::{api, codec, contains, json};
    use crate::codec::EncryptionPolicy;

    const START: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
    const NEW_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecutionAgain";
    const NEW_FIELD: u32 = 1000;

    /// The compiled-in API with a payload field added to `StartWorkflowExecutionRequest` and
    /// an RPC added to `WorkflowService`, as a newer Temporal API might have them.
    pub fn newer_api() -> FileDescriptorSet {
        let mut set = FileDescriptorSet::decode(COMPILED_IN_DESCRIPTORS).unwrap();
        for file in &mut set.file {
            if file.package() != "temporal.api.workflowservice.v1" {
                continue;
            }
            for message in &mut file.message_type {
                if message.name() == "StartWorkflowExecutionRequest" {
                    message.field.push(FieldDescriptorProto {
                        name: Some("secret_note".into()),
                        number: Some(NEW_FIELD as i32),
                        label: Some(Label::Optional as i32),
                        r#type: Some(Type::Message as i32),
                        type_name: Some(".temporal.api.common.v1.Payload".into()),
                        ..Default::default()
                    });
                }
            }
            for service in &mut file.service {
                if service.name() == "WorkflowService" {
                    service.method.push(MethodDescriptorProto {
                        name: Some("StartWorkflowExecutionAgain".into()),
                        input_type: Some(".temporal.api.workflowservice.v1.StartWorkflowExecutionRequest".into()),
                        output_type: Some(".temporal.api.workflowservice.v1.StartWorkflowExecutionResponse".into()),
                        ..Default::default()
                    });
                }
            }
        }
        set
    }

    fn with_secret_note() -> Vec<u8> {
        let mut request = Vec::new();
        write_len_field(&mut request, 2, b"workflow-id");
        write_len_field(&mut request, NEW_FIELD, &json("\"secret-note\"").encode_to_vec());
        request
    }

    #[test]
    fn the_compiled_in_schema_covers_the_api_it_was_built_from() {
        let schema = api();
        // 306 message types (map entries included) reach a payload in temporalio-protos
        // 0.10.2; the synthetic history blob comes last.
        assert_eq!(schema.messages().len(), 306 + 1, "{}", schema.summary());
        assert_eq!(schema.methods().len(), 219);
        assert!(schema.method(START).unwrap().request.is_some());
        assert!(schema.method(NEW_METHOD).is_none());
        assert!(schema.source().starts_with("temporalio-protos "), "{}", schema.source());
    }

    #[test]
    fn an_unknown_field_holding_a_payload_fails_a_request_and_passes_a_response() {
        let codec = codec(EncryptionPolicy::default());
        let request_type = api().method(START).unwrap().request.unwrap();
        let refused = codec.encode(request_type, &with_secret_note()).unwrap_err();
        assert!(
            matches!(&refused, WalkError::UnknownPayloadField { message, field }
                if message == "temporal.api.workflowservice.v1.StartWorkflowExecutionRequest" && *field == NEW_FIELD),
            "{refused:?}"
        );
        assert_eq!(
            codec.decode(request_type, &with_secret_note()).unwrap(),
            with_secret_note()
        );
        // Inside a Payloads, a map of payloads, or a message around one: found too.
        let payloads = Payloads {
            payloads: vec![json("\"deeper\"")],
        }
        .encode_to_vec();
        let mut wrapped = Vec::new();
        write_len_field(&mut wrapped, 7, &payloads);
        for content in [payloads, wrapped] {
            let mut request = Vec::new();
            write_len_field(&mut request, NEW_FIELD, &content);
            assert!(codec.encode(request_type, &request).is_err());
        }
        // An unknown field that is no payload passes, and is counted.
        let mut plain = Vec::new();
        write_len_field(&mut plain, NEW_FIELD, b"just a newer string field");
        assert_eq!(codec.encode(request_type, &plain).unwrap(), plain);
        assert_eq!(
            codec.stats().unknown_fields.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn a_schema_built_from_newer_descriptors_encrypts_the_new_field_and_knows_the_new_method() {
        let schema: &'static Schema = Box::leak(Box::new(
            Schema::from_descriptors(&newer_api(), "a newer API".into()).unwrap(),
        ));
        assert!(schema.method(NEW_METHOD).unwrap().request.is_some());
        let codec = codec(EncryptionPolicy::default()).with_schema(schema);
        let request_type = schema.method(START).unwrap().request.unwrap();
        let encrypted = codec.encode(request_type, &with_secret_note()).unwrap();
        assert!(!contains(&encrypted, b"secret-note"));
        assert!(contains(&encrypted, b"workflow-id"));
        assert_eq!(codec.decode(request_type, &encrypted).unwrap(), with_secret_note());
        let mut reader = super::super::wire::FieldReader::new(&encrypted);
        let mut note = None;
        while let Some(field) = reader.next_field().unwrap() {
            if field.number == NEW_FIELD {
                note = Some(Payload::decode(field.content).unwrap());
            }
        }
        let note = note.expect("the new field is still there");
        assert_eq!(note.metadata["encoding"], b"binary/encrypted");
    }

    #[test]
    fn a_descriptor_set_without_the_temporal_api_is_refused_with_what_it_lacks() {
        let empty = FileDescriptorSet::default();
        let error = Schema::from_descriptors(&empty, "nothing".into()).unwrap_err();
        assert!(error.to_string().contains("temporal.api.common.v1.Payload"), "{error}");
    }
}

#[test]
fn plaintext_texts_beside_encoded_attributes_are_sealed_with_them_and_come_back_as_they_were() {
    use temporalio_protos::temporal::api::failure::v1::Failure;
    let codec = codec(EncryptionPolicy::default());
    let failure = Failure {
        message: "leaked-message".into(),
        stack_trace: "leaked-stack".into(),
        encoded_attributes: Some(json(r#"{"message":"sdk-secret"}"#)),
        ..Default::default()
    }
    .encode_to_vec();
    let encrypted = codec.encode(api().failure_type, &failure).unwrap();
    for text in [&b"leaked-message"[..], b"leaked-stack", b"sdk-secret"] {
        assert!(
            !contains(&encrypted, text),
            "{} left in plaintext",
            String::from_utf8_lossy(text)
        );
    }
    let stored = Failure::decode(encrypted.as_slice()).unwrap();
    assert_eq!(stored.message, "Encoded failure");
    assert!(stored.stack_trace.is_empty());
    assert_eq!(codec.decode(api().failure_type, &encrypted).unwrap(), failure);

    // What SDKs write when they encode the texts themselves is only encrypted.
    let sdk_encoded = Failure {
        message: "Encoded failure".into(),
        encoded_attributes: Some(json(r#"{"message":"sdk-secret"}"#)),
        ..Default::default()
    }
    .encode_to_vec();
    let encrypted = codec.encode(api().failure_type, &sdk_encoded).unwrap();
    assert_eq!(
        Failure::decode(encrypted.as_slice()).unwrap().message,
        "Encoded failure"
    );
    assert!(!contains(&encrypted, b"sdk-secret"));
    let read = Failure::decode(codec.decode(api().failure_type, &encrypted).unwrap().as_slice()).unwrap();
    assert_eq!(
        read.message, "sdk-secret",
        "texts in an encoded_attributes of their own shape are put back"
    );
}

#[test]
fn malformed_encoded_attributes_beside_plaintext_texts_are_refused_on_the_way_in() {
    // Found by fuzzing: the attributes were sealed unread, and then could not be read back.
    use temporalio_protos::temporal::api::failure::v1::Failure;
    let codec = codec(EncryptionPolicy::default());
    let failure = Failure {
        message: "seed failure".into(),
        stack_trace: "at seed()".into(),
        ..Default::default()
    }
    .encode_to_vec();
    // encoded_attributes (20) of 4 bytes whose metadata entry claims 85; and one that is
    // not length-delimited at all, which must not be dropped.
    for malformed in [&[0xa2, 0x01, 0x04, 0x0a, 0x55, 0x0a, 0x08][..], &[0xa0, 0x01, 0x07]] {
        let mut message = failure.clone();
        message.extend_from_slice(malformed);
        assert!(matches!(
            codec.encode(api().failure_type, &message),
            Err(WalkError::Malformed(_))
        ));
    }
}

#[test]
fn protojson_nested_past_the_parsers_limit_is_a_clean_error_on_a_two_mebibyte_stack() {
    use temporalio_protos::temporal::api::common::v1::DataBlob;
    use temporalio_protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryResponse;
    let walked = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let codec = codec(EncryptionPolicy::default());
            let response = api()
                .message_by_name("temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryResponse")
                .unwrap();
            let deep_history = format!(r#"{{"events":{}"#, "[".repeat(200_000)).into_bytes();
            let deep_failure = r#"{"cause":"#.repeat(20_000).into_bytes();
            let blob = GetWorkflowExecutionHistoryResponse {
                raw_history: vec![DataBlob {
                    encoding_type: 2,
                    data: deep_history,
                }],
                ..Default::default()
            }
            .encode_to_vec();
            let history_error = codec.decode(response, &blob).unwrap_err();
            let nexus = api().message_by_name("temporal.api.nexus.v1.Failure").unwrap();
            let mut failure = Vec::new();
            write_map_entry(&mut failure, 2, b"type", b"temporal.api.failure.v1.Failure");
            write_len_field(&mut failure, 3, &deep_failure);
            let failure_error = codec.decode(nexus, &failure).unwrap_err();
            (history_error, failure_error)
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(matches!(walked.0, WalkError::Malformed(_)), "{:?}", walked.0);
    assert!(matches!(walked.1, WalkError::Malformed(_)), "{:?}", walked.1);
}
