//! Codec throughput: walker + AES-256-GCM over a 1,000-event history and a small start request, against raw aws-lc-rs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use prost::Message as _;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use temporal_codec_proxy::payload::schema::Schema;
use temporalio_protos::temporal::api::common::v1::{
    ActivityType, Header, Memo, Payload, Payloads, SearchAttributes, WorkflowType,
};
use temporalio_protos::temporal::api::enums::v1::EventType;
use temporalio_protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_protos::temporal::api::history::v1::{
    ActivityTaskCompletedEventAttributes, ActivityTaskScheduledEventAttributes, ActivityTaskStartedEventAttributes,
    History, HistoryEvent, MarkerRecordedEventAttributes, WorkflowExecutionCompletedEventAttributes,
    WorkflowExecutionSignaledEventAttributes, WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes, WorkflowTaskScheduledEventAttributes, WorkflowTaskStartedEventAttributes,
};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::{
    GetWorkflowExecutionHistoryResponse, StartWorkflowExecutionRequest,
};
use zeroize::Zeroizing;

const HISTORY_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetWorkflowExecutionHistory";
const START_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
const HISTORY_EVENTS: usize = 1_000;
const PAYLOAD_DATA_BYTES: usize = 1024;
const TASK_QUEUE: &str = "orders";
const KEY_MATERIAL: [u8; 32] = [7; 32];
/// Bytes a sealed payload adds: its nonce and its GCM tag.
const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

const WARM_UP: Duration = Duration::from_millis(300);
/// Rounds run every case once in turn, so drift from other load on the machine hits all cases alike.
const ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(400);

fn main() {
    let keyring = Keyring::new([("bench".to_owned(), Zeroizing::new(KEY_MATERIAL.to_vec()))]).expect("valid key");
    let codec = Codec::new(keyring, EncryptionPolicy::default());
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY_MATERIAL).expect("valid key"));

    history_bench(&codec, &raw_key);
    println!();
    start_request_bench(&codec, &raw_key);
}

fn history_bench(codec: &Codec, raw_key: &LessSafeKey) {
    let response_type = Schema::compiled_in()
        .method(HISTORY_METHOD)
        .and_then(|method| method.response)
        .expect("GetWorkflowExecutionHistory responses carry payloads");
    let response = history_response();
    let payloads = history_payloads(&response);
    let plaintext = response.encode_to_vec();
    let ciphertext = codec.encode(response_type, &plaintext).expect("history encrypts");
    assert_eq!(
        codec.decode(response_type, &ciphertext).expect("history decrypts"),
        plaintext,
        "decryption must give back the original message"
    );
    let payload_lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
    let payload_bytes: usize = payload_lens.iter().sum();
    let sealed = seal_all(raw_key, &payloads);

    println!(
        "GetWorkflowExecutionHistoryResponse: {} events, {} payloads of {PAYLOAD_DATA_BYTES} B JSON data \
         ({} B as serialized Payloads), message {} B plaintext / {} B encrypted",
        HISTORY_EVENTS,
        payloads.len(),
        payload_bytes,
        plaintext.len(),
        ciphertext.len()
    );
    let times = measure(
        payload_bytes,
        &mut [
            Case {
                name: "decode (walker+codec)",
                input_bytes: ciphertext.len(),
                run: &mut || {
                    black_box(codec.decode(response_type, black_box(&ciphertext)).unwrap());
                },
            },
            Case {
                name: "raw AES-GCM open",
                input_bytes: sealed.len(),
                run: &mut || {
                    black_box(open_all(raw_key, black_box(&sealed), &payload_lens));
                },
            },
            // A history written before encryption was turned on: the walker runs, nothing is decrypted.
            Case {
                name: "decode, nothing to decrypt",
                input_bytes: plaintext.len(),
                run: &mut || {
                    black_box(codec.decode(response_type, black_box(&plaintext)).unwrap());
                },
            },
            Case {
                name: "encode (walker+codec)",
                input_bytes: plaintext.len(),
                run: &mut || {
                    black_box(codec.encode(response_type, black_box(&plaintext)).unwrap());
                },
            },
            Case {
                name: "raw AES-GCM seal",
                input_bytes: payload_bytes,
                run: &mut || {
                    black_box(seal_all(raw_key, black_box(&payloads)));
                },
            },
        ],
    );
    let [decode, open, passthrough, encode, seal] = times.as_slice() else {
        unreachable!("five cases measured")
    };
    println!(
        "ratio walker+codec / raw AES-GCM (payload throughput): decode {:.2}, encode {:.2} (target >= 0.5)",
        open.as_secs_f64() / decode.as_secs_f64(),
        seal.as_secs_f64() / encode.as_secs_f64()
    );
    println!(
        "walking the history with nothing to decrypt takes {:.0}% of the time of decoding it encrypted",
        passthrough.as_secs_f64() / decode.as_secs_f64() * 100.0
    );
}

fn start_request_bench(codec: &Codec, raw_key: &LessSafeKey) {
    let request_type = Schema::compiled_in()
        .method(START_METHOD)
        .and_then(|method| method.request)
        .expect("StartWorkflowExecution requests carry payloads");
    let request = start_request();
    let plaintext = request.encode_to_vec();
    let ciphertext = codec.encode(request_type, &plaintext).expect("request encrypts");
    assert_eq!(
        codec.decode(request_type, &ciphertext).expect("request decrypts"),
        plaintext
    );
    // Input, memo and header are encrypted; the search attribute stays plaintext.
    let payloads: Vec<Vec<u8>> = [
        request
            .input
            .iter()
            .flat_map(|input| &input.payloads)
            .collect::<Vec<_>>(),
        request.memo.iter().flat_map(|memo| memo.fields.values()).collect(),
        request
            .header
            .iter()
            .flat_map(|header| header.fields.values())
            .collect(),
    ]
    .concat()
    .into_iter()
    .map(Payload::encode_to_vec)
    .collect();
    let payload_lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
    let payload_bytes: usize = payload_lens.iter().sum();
    let sealed = seal_all(raw_key, &payloads);

    println!(
        "StartWorkflowExecutionRequest: {} encrypted payloads ({} B as serialized Payloads), \
         message {} B plaintext / {} B encrypted",
        payloads.len(),
        payload_bytes,
        plaintext.len(),
        ciphertext.len()
    );
    let times = measure(
        payload_bytes,
        &mut [
            Case {
                name: "encode (walker+codec)",
                input_bytes: plaintext.len(),
                run: &mut || {
                    black_box(codec.encode(request_type, black_box(&plaintext)).unwrap());
                },
            },
            Case {
                name: "raw AES-GCM seal",
                input_bytes: payload_bytes,
                run: &mut || {
                    black_box(seal_all(raw_key, black_box(&payloads)));
                },
            },
            Case {
                name: "decode (walker+codec)",
                input_bytes: ciphertext.len(),
                run: &mut || {
                    black_box(codec.decode(request_type, black_box(&ciphertext)).unwrap());
                },
            },
            Case {
                name: "raw AES-GCM open",
                input_bytes: sealed.len(),
                run: &mut || {
                    black_box(open_all(raw_key, black_box(&sealed), &payload_lens));
                },
            },
        ],
    );
    let [encode, seal, decode, open] = times.as_slice() else {
        unreachable!("four cases measured")
    };
    println!(
        "ratio walker+codec / raw AES-GCM (payload throughput): encode {:.2}, decode {:.2}",
        seal.as_secs_f64() / encode.as_secs_f64(),
        open.as_secs_f64() / decode.as_secs_f64()
    );
}

/// One timed operation: `input_bytes` is what one run reads (the message, or the payloads
/// for raw AES-GCM).
struct Case<'a> {
    name: &'static str,
    input_bytes: usize,
    run: &'a mut dyn FnMut(),
}

/// Runs each case for [`WARM_UP`], then [`ROUNDS`] rounds of [`ROUND_TIME`] each; prints
/// and returns each case's median time per run. `payload_bytes` are the plaintext payload
/// bytes every case processes.
fn measure(payload_bytes: usize, cases: &mut [Case<'_>]) -> Vec<Duration> {
    for case in cases.iter_mut() {
        time_per_iteration(case.run, WARM_UP);
    }
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (case, times) in cases.iter_mut().zip(&mut rounds) {
            times.push(time_per_iteration(case.run, ROUND_TIME));
        }
    }
    println!(
        "  {:<28} {:>12} {:>16} {:>16}",
        "case", "time/run", "payload MB/s", "input MB/s"
    );
    let mut medians = Vec::with_capacity(cases.len());
    for (case, mut times) in cases.iter().zip(rounds) {
        times.sort();
        let median = times[ROUNDS / 2];
        let seconds = median.as_secs_f64();
        println!(
            "  {:<28} {:>12} {:>16.1} {:>16.1}",
            case.name,
            format_duration(median),
            payload_bytes as f64 / seconds / 1e6,
            case.input_bytes as f64 / seconds / 1e6
        );
        let spread = times[ROUNDS - 1].as_secs_f64() / times[0].as_secs_f64() - 1.0;
        if spread > 0.2 {
            println!("    (rounds varied by {:.0}%)", spread * 100.0);
        }
        medians.push(median);
    }
    medians
}

/// Calls `case` repeatedly for at least `budget`; returns the mean time of one call.
fn time_per_iteration(case: &mut dyn FnMut(), budget: Duration) -> Duration {
    let start = Instant::now();
    let mut iterations: u32 = 0;
    // Reading the clock once per batch keeps its cost out of sub-microsecond cases.
    let mut batch = 1;
    loop {
        for _ in 0..batch {
            case();
        }
        iterations += batch;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return elapsed / iterations;
        }
        if elapsed < budget / 100 {
            batch *= 2;
        }
    }
}

fn format_duration(time: Duration) -> String {
    let nanos = time.as_nanos();
    if nanos >= 1_000_000 {
        format!("{:.3} ms", time.as_secs_f64() * 1e3)
    } else if nanos >= 10_000 {
        format!("{:.2} us", time.as_secs_f64() * 1e6)
    } else {
        format!("{nanos} ns")
    }
}

/// Seals each payload with a fresh random nonce into one output buffer, as the codec does
/// for the payloads of one message: nonce ‖ ciphertext ‖ tag per payload, back to back.
fn seal_all(key: &LessSafeKey, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payloads.iter().map(|payload| payload.len() + SEAL_OVERHEAD).sum());
    for payload in payloads {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
        out.extend_from_slice(&nonce);
        let plaintext_at = out.len();
        out.extend_from_slice(payload);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[plaintext_at..],
            )
            .expect("sealing succeeds");
        out.extend_from_slice(tag.as_ref());
    }
    out
}

/// Opens the records [`seal_all`] wrote into one output buffer, as the codec's decoder does.
fn open_all(key: &LessSafeKey, sealed: &[u8], plaintext_lens: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.len());
    let mut rest = sealed;
    for len in plaintext_lens {
        let (record, next) = rest.split_at(len + SEAL_OVERHEAD);
        rest = next;
        let (nonce, ciphertext) = record.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12-byte nonce");
        let start = out.len();
        out.extend_from_slice(ciphertext);
        let plaintext_len = key
            .open_in_place(nonce, Aad::empty(), &mut out[start..])
            .expect("authentic")
            .len();
        out.truncate(start + plaintext_len);
    }
    out
}

/// The serialized plaintext `Payload`s of a history, in order: what the codec encrypts.
fn history_payloads(response: &GetWorkflowExecutionHistoryResponse) -> Vec<Vec<u8>> {
    let events = response.history.iter().flat_map(|history| &history.events);
    let mut payloads: Vec<&Payload> = Vec::new();
    for event in events {
        let groups: Vec<&Payloads> = match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.input.iter().collect(),
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => a.input.iter().collect(),
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => a.result.iter().collect(),
            Some(Attributes::MarkerRecordedEventAttributes(a)) => a.details.values().collect(),
            Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) => a.input.iter().collect(),
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => a.result.iter().collect(),
            _ => Vec::new(),
        };
        payloads.extend(groups.into_iter().flat_map(|group| &group.payloads));
    }
    payloads.into_iter().map(Payload::encode_to_vec).collect()
}

/// A history of an order workflow: it starts, then repeats "workflow task, activity,
/// local activity (a marker), signal" until the history has [`HISTORY_EVENTS`] events,
/// and completes.
fn history_response() -> GetWorkflowExecutionHistoryResponse {
    let mut events = vec![HistoryEvent {
        event_type: EventType::WorkflowExecutionStarted as i32,
        attributes: Some(Attributes::WorkflowExecutionStartedEventAttributes(
            WorkflowExecutionStartedEventAttributes {
                workflow_type: Some(WorkflowType {
                    name: "ProcessOrder".to_owned(),
                }),
                task_queue: Some(task_queue()),
                input: Some(json_payloads(0, 1)),
                identity: "worker-1@bench".to_owned(),
                workflow_id: "order-00000001".to_owned(),
                attempt: 1,
                ..Default::default()
            },
        )),
        ..Default::default()
    }];
    let mut seed = 1;
    while events.len() < HISTORY_EVENTS - 1 {
        let id = events.len() as i64 + 1;
        let (event_type, attributes) = match events.len() % 8 {
            1 => (
                EventType::WorkflowTaskScheduled,
                Attributes::WorkflowTaskScheduledEventAttributes(WorkflowTaskScheduledEventAttributes {
                    task_queue: Some(task_queue()),
                    attempt: 1,
                    ..Default::default()
                }),
            ),
            2 => (
                EventType::WorkflowTaskStarted,
                Attributes::WorkflowTaskStartedEventAttributes(WorkflowTaskStartedEventAttributes {
                    scheduled_event_id: id - 1,
                    identity: "worker-1@bench".to_owned(),
                    request_id: format!("request-{id}"),
                    history_size_bytes: id * 1300,
                    ..Default::default()
                }),
            ),
            3 => (
                EventType::WorkflowTaskCompleted,
                Attributes::WorkflowTaskCompletedEventAttributes(WorkflowTaskCompletedEventAttributes {
                    scheduled_event_id: id - 2,
                    started_event_id: id - 1,
                    identity: "worker-1@bench".to_owned(),
                    ..Default::default()
                }),
            ),
            4 => (
                EventType::ActivityTaskScheduled,
                Attributes::ActivityTaskScheduledEventAttributes(ActivityTaskScheduledEventAttributes {
                    activity_id: format!("{id}"),
                    activity_type: Some(ActivityType {
                        name: "ChargeCard".to_owned(),
                    }),
                    task_queue: Some(task_queue()),
                    input: Some(json_payloads(seed, 2)),
                    workflow_task_completed_event_id: id - 1,
                    ..Default::default()
                }),
            ),
            5 => (
                EventType::ActivityTaskStarted,
                Attributes::ActivityTaskStartedEventAttributes(ActivityTaskStartedEventAttributes {
                    scheduled_event_id: id - 1,
                    identity: "worker-1@bench".to_owned(),
                    request_id: format!("request-{id}"),
                    attempt: 1,
                    ..Default::default()
                }),
            ),
            6 => (
                EventType::ActivityTaskCompleted,
                Attributes::ActivityTaskCompletedEventAttributes(ActivityTaskCompletedEventAttributes {
                    result: Some(json_payloads(seed, 1)),
                    scheduled_event_id: id - 2,
                    started_event_id: id - 1,
                    identity: "worker-1@bench".to_owned(),
                    ..Default::default()
                }),
            ),
            7 => (
                EventType::MarkerRecorded,
                Attributes::MarkerRecordedEventAttributes(MarkerRecordedEventAttributes {
                    marker_name: "core_local_activity".to_owned(),
                    details: [
                        ("data".to_owned(), json_payloads(seed, 1)),
                        ("result".to_owned(), json_payloads(seed + 1, 1)),
                    ]
                    .into(),
                    workflow_task_completed_event_id: id - 4,
                    ..Default::default()
                }),
            ),
            _ => (
                EventType::WorkflowExecutionSignaled,
                Attributes::WorkflowExecutionSignaledEventAttributes(WorkflowExecutionSignaledEventAttributes {
                    signal_name: "updateShipping".to_owned(),
                    input: Some(json_payloads(seed, 2)),
                    identity: "client@bench".to_owned(),
                    ..Default::default()
                }),
            ),
        };
        seed += 2;
        events.push(HistoryEvent {
            event_type: event_type as i32,
            attributes: Some(attributes),
            ..Default::default()
        });
    }
    events.push(HistoryEvent {
        event_type: EventType::WorkflowExecutionCompleted as i32,
        attributes: Some(Attributes::WorkflowExecutionCompletedEventAttributes(
            WorkflowExecutionCompletedEventAttributes {
                result: Some(json_payloads(seed, 1)),
                workflow_task_completed_event_id: events.len() as i64 - 1,
                ..Default::default()
            },
        )),
        ..Default::default()
    });
    for (index, event) in events.iter_mut().enumerate() {
        event.event_id = index as i64 + 1;
        event.task_id = 1_048_576 + index as i64;
        let time = event.event_time.get_or_insert_with(Default::default);
        time.seconds = 1_780_000_000 + index as i64;
        time.nanos = (index as i32 * 7_919_311) % 1_000_000_000;
    }
    GetWorkflowExecutionHistoryResponse {
        history: Some(History { events }),
        ..Default::default()
    }
}

/// A start request as an SDK client sends it: one input, a memo, a tracing header and
/// one search attribute.
fn start_request() -> StartWorkflowExecutionRequest {
    let small_json = |text: &str| Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: text.as_bytes().to_vec(),
        external_payloads: vec![],
    };
    StartWorkflowExecutionRequest {
        namespace: "default".to_owned(),
        workflow_id: "order-00000001".to_owned(),
        workflow_type: Some(WorkflowType {
            name: "ProcessOrder".to_owned(),
        }),
        task_queue: Some(task_queue()),
        input: Some(json_payloads(0, 1)),
        identity: "client@bench".to_owned(),
        request_id: "4a1f1e9c-6d0b-4f3e-9d55-0c1b2a3d4e5f".to_owned(),
        memo: Some(Memo {
            fields: [(
                "customer".to_owned(),
                small_json(r#"{"name":"Ada Lovelace","tier":"gold"}"#),
            )]
            .into(),
        }),
        header: Some(Header {
            fields: [(
                "_tracer-data".to_owned(),
                small_json(r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#),
            )]
            .into(),
        }),
        search_attributes: Some(SearchAttributes {
            indexed_fields: [("CustomerTier".to_owned(), small_json(r#""gold""#))].into(),
        }),
        ..Default::default()
    }
}

fn task_queue() -> TaskQueue {
    TaskQueue {
        name: TASK_QUEUE.to_owned(),
        kind: 1,
        ..Default::default()
    }
}

/// `count` JSON payloads of exactly [`PAYLOAD_DATA_BYTES`] data bytes each.
fn json_payloads(seed: usize, count: usize) -> Payloads {
    Payloads {
        payloads: (0..count)
            .map(|i| Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: json_document(seed * 31 + i, PAYLOAD_DATA_BYTES),
                external_payloads: vec![],
            })
            .collect(),
    }
}

/// A JSON order document of exactly `len` bytes; the content varies with `seed`.
fn json_document(seed: usize, len: usize) -> Vec<u8> {
    let mut json = format!(
        r#"{{"orderId":"order-{seed:08}","customer":{{"id":{},"tier":"gold"}},"items":["#,
        seed * 7919 % 100_000
    );
    let mut item = 0;
    // Room for the longest item and the fixed `],"note":""}` tail.
    let reserve = 64 + r#"],"note":""}"#.len();
    while json.len() + reserve < len {
        if item > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"sku":"SKU-{:06}","qty":{},"price":{}.{:02}}}"#,
            (seed + item) * 104_729 % 1_000_000,
            item % 5 + 1,
            (seed + item) % 500,
            item % 100
        ));
        item += 1;
    }
    json.push_str(r#"],"note":""#);
    let filler = "shipping by ground; leave at the front desk ".chars().cycle();
    json.extend(filler.take(len - json.len() - 2));
    json.push_str(r#""}"#);
    assert_eq!(json.len(), len);
    json.into_bytes()
}
