//! KMS envelope encryption throughput against the moto KMS emulator: payloads per second
//! encrypted and decrypted with cold and warm caches, and KMS calls per 10,000 payloads
//! next to Temporal's sample approach of one KMS call per payload.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prost::Message as _;
use std::sync::Arc;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring, ProviderKeys};
use temporal_codec_proxy::keys::KeySelector;
use temporal_codec_proxy::keys::aws_kms::{AwsKms, AwsKmsSettings};
use temporal_codec_proxy::keys::cache::{CacheSettings, CachedKeys, DataKeyLimits};
use temporal_codec_proxy::payload::schema::Schema;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};

const PAYLOADS: usize = 10_000;
const COLD_ROUNDS: usize = 20;
const SAMPLE_ROUNDS: usize = 300;

#[tokio::main]
async fn main() {
    // The emulator accepts any credentials; the SDK's default chain reads these.
    // SAFETY: set before any other thread exists.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto_server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-tools/venv/bin/moto_server");
    let mut moto = Command::new(&moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-test-tools.sh)", moto_server.display()));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .load()
        .await;
    let admin = aws_sdk_kms::Client::new(&config);
    let key_id = admin.create_key().send().await.unwrap().key_metadata.unwrap().key_id;

    let message = Payloads {
        payloads: vec![Payload {
            metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
            data: vec![b'x'; 1024],
            external_payloads: vec![],
        }],
    }
    .encode_to_vec();
    let codec = || async {
        let client = AwsKms::new(&AwsKmsSettings {
            endpoint: Some(endpoint.clone()),
            region: None,
        })
        .await;
        let cache = CachedKeys::new(
            Arc::new(client),
            CacheSettings {
                limits: DataKeyLimits {
                    max_age: Duration::from_secs(300),
                    max_payloads: 1_000_000,
                    max_bytes: 64 << 30,
                },
                decrypt_cache_ttl: Duration::from_secs(3600),
                decrypt_cache_capacity: 10_000,
            },
        );
        let selector = KeySelector::Fixed(key_id.clone());
        Codec::with_provider(
            Keyring::empty(),
            ProviderKeys { cache, selector },
            EncryptionPolicy::default(),
        )
    };

    // Cold: a fresh proxy's first payload pays for the KMS call.
    let mut cold_encrypt = Duration::ZERO;
    let mut cold_decrypt = Duration::ZERO;
    for _ in 0..COLD_ROUNDS {
        let fresh = codec().await;
        let started = Instant::now();
        let key = fresh.encryption_key("default").await.unwrap();
        let one_encrypted = fresh
            .encode_with(&key, Schema::compiled_in().payloads_type, &message)
            .unwrap();
        cold_encrypt += started.elapsed();
        let reader = codec().await;
        let started = Instant::now();
        let resolved = reader
            .decryption_keys("default", Schema::compiled_in().payloads_type, &one_encrypted)
            .await
            .unwrap();
        reader
            .decode_with(&resolved, Schema::compiled_in().payloads_type, &one_encrypted)
            .unwrap();
        cold_decrypt += started.elapsed();
    }

    // Warm: 10,000 payloads, one call each, as a proxy sees them.
    let warm = codec().await;
    let started = Instant::now();
    let mut encrypted = Vec::with_capacity(PAYLOADS);
    for _ in 0..PAYLOADS {
        let key = warm.encryption_key("default").await.unwrap();
        encrypted.push(
            warm.encode_with(&key, Schema::compiled_in().payloads_type, &message)
                .unwrap(),
        );
    }
    let warm_encrypt = started.elapsed();
    let reader = codec().await;
    let started = Instant::now();
    for message in &encrypted {
        let resolved = reader
            .decryption_keys("default", Schema::compiled_in().payloads_type, message)
            .await
            .unwrap();
        reader
            .decode_with(&resolved, Schema::compiled_in().payloads_type, message)
            .unwrap();
    }
    let warm_decrypt = started.elapsed();
    let generate_calls = warm.provider().unwrap().stats().generate_ok.load(Ordering::Relaxed);
    let decrypt_calls = reader.provider().unwrap().stats().unwrap_ok.load(Ordering::Relaxed);

    // The sample's approach: a GenerateDataKey for every payload, a Decrypt for every payload.
    let started = Instant::now();
    for _ in 0..SAMPLE_ROUNDS {
        admin
            .generate_data_key()
            .key_id(&key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .unwrap();
    }
    let sample_generate = started.elapsed();

    let per_second = |count: usize, elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!("KMS envelope encryption, 1 KiB payloads, moto KMS emulator on loopback");
    println!("{:<44} {:>14}", "case", "payloads/s");
    println!(
        "{:<44} {:>14.0}",
        "encrypt, cold cache (GenerateDataKey each)",
        per_second(COLD_ROUNDS, cold_encrypt)
    );
    println!(
        "{:<44} {:>14.0}",
        "decrypt, cold cache (Decrypt each)",
        per_second(COLD_ROUNDS, cold_decrypt)
    );
    println!(
        "{:<44} {:>14.0}",
        "encrypt, warm cache",
        per_second(PAYLOADS, warm_encrypt)
    );
    println!(
        "{:<44} {:>14.0}",
        "decrypt, warm cache",
        per_second(PAYLOADS, warm_decrypt)
    );
    println!(
        "{:<44} {:>14.0}",
        "sample approach: GenerateDataKey per payload",
        per_second(SAMPLE_ROUNDS, sample_generate)
    );
    println!();
    println!("KMS calls for {PAYLOADS} payloads: proxy {generate_calls} GenerateDataKey + {decrypt_calls} Decrypt;");
    println!(
        "sample approach {PAYLOADS} GenerateDataKey + {PAYLOADS} Decrypt: {:.0}x fewer calls",
        (2 * PAYLOADS) as f64 / (generate_calls + decrypt_calls).max(1) as f64
    );
    let _ = moto.kill();
    let _ = moto.wait();
}
