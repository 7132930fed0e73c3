//! Tests of the samples format against Temporal's vectors and an independent AES-GCM.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use serde_json::Value;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
use zeroize::Zeroizing;

use super::samples_format::{TAG_LEN, encrypt_payload_with_nonce};
use super::*;
use crate::payload::schema::Schema;

fn static_keys(codec: &Codec) -> &Keyring {
    codec.namespace_keys().for_namespace("").unwrap().static_keys()
}

fn payload_type() -> MessageIndex {
    Schema::compiled_in().payload_type
}

fn payloads_type() -> MessageIndex {
    Schema::compiled_in().payloads_type
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/samples-codec-vectors.json")).unwrap()
}

fn payload_bytes(json: &Value) -> Vec<u8> {
    serde_json::from_value::<Payload>(json.clone()).unwrap().encode_to_vec()
}

fn key_material(vectors: &Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(STANDARD.decode(vectors["key_base64"].as_str().unwrap()).unwrap())
}

fn codec_with(keys: &[(&str, &[u8])]) -> Codec {
    let keyring = Keyring::new(keys.iter().map(|(id, k)| (id.to_string(), Zeroizing::new(k.to_vec())))).unwrap();
    Codec::new(keyring, EncryptionPolicy::default())
}

fn sample_codec() -> Codec {
    let vectors = vectors();
    let key = key_material(&vectors);
    codec_with(&[(vectors["key_id"].as_str().unwrap(), &key)])
}

#[test]
fn decrypts_every_vector_made_by_the_sample_codec() {
    let vectors = vectors();
    let codec = sample_codec();
    let cases = vectors["sample_codec_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let encrypted = payload_bytes(&case["encrypted"]);
        let expected = STANDARD
            .decode(case["plaintext_serialized_base64"].as_str().unwrap())
            .unwrap();
        let decrypted = codec.decode(payload_type(), &encrypted).unwrap();
        assert_eq!(decrypted, expected, "{}", case["name"]);
        assert_eq!(
            Payload::decode(decrypted.as_slice()).unwrap(),
            serde_json::from_value::<Payload>(case["plaintext"].clone()).unwrap()
        );
    }
    assert_eq!(codec.stats().payloads_decrypted.load(Ordering::Relaxed), 5);
}

#[test]
fn known_answer_vectors_decrypt_and_encrypt_to_the_exact_bytes() {
    let vectors = vectors();
    let codec = sample_codec();
    let kats = vectors["known_answer_vectors"].as_array().unwrap();
    assert!(kats.len() >= 3);
    for kat in kats {
        let plaintext = hex::decode(kat["plaintext_serialized_hex"].as_str().unwrap()).unwrap();
        let encrypted = payload_bytes(&kat["encrypted"]);
        assert_eq!(codec.decode(payload_type(), &encrypted).unwrap(), plaintext);

        let nonce: [u8; 12] = hex::decode(kat["nonce_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let mut ours = Vec::new();
        encrypt_payload_with_nonce(static_keys(&codec).active().unwrap(), nonce, &plaintext, &mut ours).unwrap();
        let ours = Payload::decode(ours.as_slice()).unwrap();
        let expected = Payload::decode(encrypted.as_slice()).unwrap();
        assert_eq!(ours, expected, "{}", kat["name"]);
        let expected_data = [
            hex::decode(kat["nonce_hex"].as_str().unwrap()).unwrap(),
            hex::decode(kat["ciphertext_hex"].as_str().unwrap()).unwrap(),
            hex::decode(kat["tag_hex"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        assert_eq!(ours.data, expected_data);
    }
}

#[test]
fn what_we_encrypt_decrypts_with_an_independent_aes_gcm() {
    let vectors = vectors();
    let key = key_material(&vectors);
    let codec = sample_codec();
    for case in vectors["sample_codec_cases"].as_array().unwrap() {
        let plaintext = payload_bytes(&case["plaintext"]);
        let encrypted = Payload::decode(codec.encode(payload_type(), &plaintext).unwrap().as_slice()).unwrap();
        assert_eq!(encrypted.metadata["encoding"], b"binary/encrypted");
        assert_eq!(encrypted.metadata["encryption-key-id"], b"test-key-id");
        assert_eq!(encrypted.data.len(), 12 + plaintext.len() + TAG_LEN);
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let (nonce, sealed) = encrypted.data.split_at(12);
        let opened = cipher.decrypt(Nonce::from_slice(nonce), sealed).unwrap();
        assert_eq!(opened, plaintext, "{}", case["name"]);
    }
}

#[test]
fn nonces_differ_between_encryptions() {
    let codec = sample_codec();
    let plaintext = payload_bytes(&vectors()["sample_codec_cases"][0]["plaintext"]);
    let first = Payload::decode(codec.encode(payload_type(), &plaintext).unwrap().as_slice()).unwrap();
    let second = Payload::decode(codec.encode(payload_type(), &plaintext).unwrap().as_slice()).unwrap();
    assert_ne!(first.data[..12], second.data[..12]);
}

#[test]
fn nonces_never_repeat_across_draws_and_threads() {
    let codec = Arc::new(sample_codec());
    let plaintext = payload_bytes(&vectors()["sample_codec_cases"][0]["plaintext"]);
    let nonces_from_a_thread = || {
        let codec = Arc::clone(&codec);
        let plaintext = plaintext.clone();
        std::thread::spawn(move || {
            (0..500)
                .map(|_| {
                    let encrypted =
                        Payload::decode(codec.encode(payload_type(), &plaintext).unwrap().as_slice()).unwrap();
                    encrypted.data[..12].to_vec()
                })
                .collect::<Vec<_>>()
        })
    };
    let threads = [nonces_from_a_thread(), nonces_from_a_thread()];
    let nonces: Vec<Vec<u8>> = threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect();
    let distinct: std::collections::HashSet<&Vec<u8>> = nonces.iter().collect();
    assert_eq!(distinct.len(), nonces.len(), "a nonce was used twice");
}

fn json_payload(text: &str) -> Vec<u8> {
    Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: text.as_bytes().to_vec(),
        external_payloads: vec![],
    }
    .encode_to_vec()
}

#[test]
fn payloads_under_unknown_keys_pass_through_and_are_counted() {
    let writer = codec_with(&[("other-team", &[7u8; 32])]);
    let reader = codec_with(&[("ours", &[9u8; 32])]);
    let foreign = writer.encode(payload_type(), &json_payload("\"x\"")).unwrap();
    assert_eq!(reader.decode(payload_type(), &foreign).unwrap(), foreign);
    assert_eq!(reader.stats().payloads_unknown_key.load(Ordering::Relaxed), 1);
}

#[test]
fn tampered_ciphertext_under_a_held_key_fails_naming_the_key() {
    let codec = codec_with(&[("prod-2026", &[5u8; 32])]);
    let mut encrypted =
        Payload::decode(codec.encode(payload_type(), &json_payload("\"x\"")).unwrap().as_slice()).unwrap();
    let last = encrypted.data.len() - 1;
    encrypted.data[last] ^= 1;
    let error = codec.decode(payload_type(), &encrypted.encode_to_vec()).unwrap_err();
    assert!(
        matches!(&error, WalkError::Authentication { key_id } if key_id == "prod-2026"),
        "{error}"
    );
    assert!(error.to_string().contains("prod-2026"));
    encrypted.data.truncate(10);
    assert!(matches!(
        codec.decode(payload_type(), &encrypted.encode_to_vec()),
        Err(WalkError::Authentication { .. })
    ));
}

#[test]
fn encryptions_are_counted_for_the_static_key_that_made_them() {
    let codec = codec_with(&[("2026", &[2u8; 32]), ("2025", &[1u8; 32])]);
    for _ in 0..3 {
        codec.encode(payload_type(), &json_payload("\"counted\"")).unwrap();
    }
    let counts: HashMap<&str, u64> = static_keys(&codec)
        .keys()
        .map(|key| (key.id(), key.encryptions()))
        .collect();
    assert_eq!(counts, HashMap::from([("2026", 3), ("2025", 0)]));
}

#[test]
fn rotation_keeps_old_payloads_readable_and_encrypts_with_the_first_key() {
    let old = codec_with(&[("2025", &[1u8; 32])]);
    let rotated = codec_with(&[("2026", &[2u8; 32]), ("2025", &[1u8; 32])]);
    let plaintext = json_payload("\"history\"");
    let under_old = old.encode(payload_type(), &plaintext).unwrap();
    assert_eq!(rotated.decode(payload_type(), &under_old).unwrap(), plaintext);
    let under_new = Payload::decode(rotated.encode(payload_type(), &plaintext).unwrap().as_slice()).unwrap();
    assert_eq!(under_new.metadata["encryption-key-id"], b"2026");
}

#[test]
fn never_encrypts_twice_and_leaves_empty_metadata_alone_only_in_answers_to_nexus_tasks() {
    let codec = sample_codec();
    let once = codec.encode(payload_type(), &json_payload("\"x\"")).unwrap();
    assert_eq!(codec.encode(payload_type(), &once).unwrap(), once);
    let bare = Payload {
        data: b"server-made".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    let schema = Schema::compiled_in();
    let sealed = codec.encode(schema.payload_type, &bare).unwrap();
    assert_ne!(
        sealed, bare,
        "a payload without metadata outside a Nexus task answer is user data"
    );
    assert_eq!(codec.decode(schema.payload_type, &sealed).unwrap(), bare);
    // A sync Nexus answer with the server's own kind of payload stays readable to the server.
    use temporalio_protos::temporal::api::nexus::v1::{StartOperationResponse, response, start_operation_response};
    use temporalio_protos::temporal::api::workflowservice::v1::RespondNexusTaskCompletedRequest;
    let answer = RespondNexusTaskCompletedRequest {
        response: Some(temporalio_protos::temporal::api::nexus::v1::Response {
            variant: Some(response::Variant::StartOperation(StartOperationResponse {
                variant: Some(start_operation_response::Variant::SyncSuccess(
                    start_operation_response::Sync {
                        payload: Some(Payload::decode(bare.as_slice()).unwrap()),
                        links: vec![],
                    },
                )),
            })),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let answer_type = schema
        .message_by_name("temporal.api.workflowservice.v1.RespondNexusTaskCompletedRequest")
        .unwrap();
    assert_eq!(codec.encode(answer_type, &answer).unwrap(), answer);
    let plain = json_payload("\"plain\"");
    assert_eq!(codec.decode(payload_type(), &plain).unwrap(), plain);
}

#[test]
fn external_payload_references_stay_visible_on_the_wrapper() {
    let codec = sample_codec();
    let mut payload = Payload::decode(json_payload("\"x\"").as_slice()).unwrap();
    payload.external_payloads.push(Default::default());
    let original = payload.encode_to_vec();
    let wrapper = Payload::decode(codec.encode(payload_type(), &original).unwrap().as_slice()).unwrap();
    assert_eq!(wrapper.external_payloads.len(), 1);
    assert_eq!(
        codec.decode(payload_type(), &wrapper.encode_to_vec()).unwrap(),
        original
    );
}

fn encrypted_with(codec: &Codec, payload: &[u8]) -> Payload {
    Payload::decode(codec.encode(payload_type(), payload).unwrap().as_slice()).unwrap()
}

#[test]
fn decoding_decoded_payloads_matches_decoding_the_serialized_message() {
    let ours = codec_with(&[("ours", &[9u8; 32])]);
    let theirs = codec_with(&[("theirs", &[7u8; 32])]);
    let payloads = vec![
        encrypted_with(&ours, &json_payload("\"first\"")),
        Payload::decode(json_payload("\"plain\"").as_slice()).unwrap(),
        encrypted_with(&theirs, &json_payload("\"foreign\"")),
        encrypted_with(&ours, &json_payload("\"last\"")),
    ];
    let serialized = Payloads {
        payloads: payloads.clone(),
    }
    .encode_to_vec();
    let expected = Payloads::decode(ours.decode(payloads_type(), &serialized).unwrap().as_slice()).unwrap();
    let decoded = ours
        .decode_payloads(&ours.static_decryption_keys(""), payloads)
        .unwrap();
    assert_eq!(decoded, expected.payloads);
    assert_eq!(decoded[0].data, b"\"first\"");
    assert_eq!(decoded[3].data, b"\"last\"");
    let stats = ours.stats();
    assert_eq!(stats.payloads_decrypted.load(Ordering::Relaxed), 4);
    assert_eq!(stats.payloads_unknown_key.load(Ordering::Relaxed), 2);
}

#[test]
fn decoding_a_tampered_decoded_payload_fails_naming_the_key() {
    let codec = codec_with(&[("prod-2026", &[5u8; 32])]);
    let mut tampered = encrypted_with(&codec, &json_payload("\"x\""));
    tampered.data[20] ^= 1;
    let error = codec
        .decode_payloads(&codec.static_decryption_keys(""), vec![tampered])
        .unwrap_err();
    assert!(
        matches!(&error, WalkError::Authentication { key_id } if key_id == "prod-2026"),
        "{error}"
    );
    assert_eq!(codec.stats().payloads_failed_authentication.load(Ordering::Relaxed), 1);
}

#[test]
fn a_view_of_a_decoded_payload_matches_the_view_of_its_bytes() {
    let codec = sample_codec();
    let mut payload = encrypted_with(&codec, &json_payload("\"x\""));
    payload
        .metadata
        .insert("__temporal_system_payload".to_owned(), b"true".to_vec());
    payload
        .metadata
        .insert("messageType".to_owned(), b"temporal.api.update.v1.Request".to_vec());
    let bytes = payload.encode_to_vec();
    let from_bytes = PayloadView::parse(&bytes).unwrap();
    let from_message = PayloadView::of_message(&payload);
    assert_eq!(format!("{from_bytes:?}"), format!("{from_message:?}"));
    assert!(from_message.is_encrypted() && from_message.system);
}

mod namespaces {
    use super::*;
    use crate::keys::namespaces::{NamespaceKeys, SectionSpec, build_sections};

    fn two_tenants() -> Codec {
        let section = |pattern: &str, id: &str, byte: u8| SectionSpec {
            pattern: pattern.to_owned(),
            keys: vec![format!("{id}=hex:{}", hex::encode([byte; 32]))],
            kms_key: None,
        };
        let sections =
            build_sections(&[section("a", "key-a", 1), section("b", "key-b", 2)], &Keyring::empty()).unwrap();
        Codec::with_namespaces(NamespaceKeys::new(sections, None), None, EncryptionPolicy::default())
    }

    #[tokio::test]
    async fn a_namespaces_payloads_decrypt_with_its_own_keys_only() {
        let codec = two_tenants();
        let plaintext = json_payload("\"secret-of-b\"");
        let key = codec.encryption_key("b").await.unwrap();
        let under_b = codec.encode_with(&key, payload_type(), &plaintext).unwrap();
        let for_b = codec.decryption_keys("b", payload_type(), &under_b).await.unwrap();
        assert_eq!(codec.decode_with(&for_b, payload_type(), &under_b).unwrap(), plaintext);
        let for_a = codec.decryption_keys("a", payload_type(), &under_b).await.unwrap();
        assert_eq!(codec.decode_with(&for_a, payload_type(), &under_b).unwrap(), under_b);
        assert_eq!(codec.stats().payloads_other_namespace_key.load(Ordering::Relaxed), 1);
        assert!(matches!(
            codec.encryption_key("c").await,
            Err(KeyError::NoKeyForNamespace(namespace)) if namespace == "c"
        ));
        let nowhere = codec.decryption_keys("c", payload_type(), &under_b).await.unwrap();
        assert_eq!(codec.decode_with(&nowhere, payload_type(), &under_b).unwrap(), under_b);
    }
}
