//! Logs and Prometheus metrics: what the proxy records about its calls, and how it is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::codec::Codec;
use crate::memory_budget::MemoryBudget;
use crate::running_server::ConnectionCap;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Parses a log filter in `RUST_LOG` syntax.
pub fn parse_log_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| format!("invalid log filter {filter:?}: {error}"))
}

/// Installs the global tracing subscriber; `filter` uses `RUST_LOG` syntax.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = parse_log_filter(filter).unwrap_or_else(|error| {
        eprintln!("temporal-codec-proxy: {error}; logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// The proxy's metrics registry and the instruments the forwarder updates.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    upstream_seconds: Family<MethodLabel, Histogram>,
    added_seconds: Family<MethodLabel, Histogram>,
    unknown_methods: Family<ActionLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Label for methods outside the payload schema: client-chosen paths would make unbounded series.
pub const UNKNOWN_METHOD: &str = "unknown";

impl Metrics {
    /// A registry with the call instruments and, read at each scrape, `codec`'s counters.
    pub fn new(codec: Arc<Codec>) -> Self {
        let mut registry = Registry::with_prefix("temporal_codec_proxy");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "rpcs",
            "gRPC calls finished, by method and gRPC status code",
            calls.clone(),
        );
        // 10 µs to about 84 s: the proxy's own work and upstream long polls on one scale.
        let buckets = || Histogram::new(exponential_buckets(0.000_01, 2.0, 24));
        let upstream_seconds = Family::<MethodLabel, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        registry.register(
            "rpc_upstream_duration_seconds",
            "Time from sending a call upstream to the end of its response",
            upstream_seconds.clone(),
        );
        let added_seconds = Family::<MethodLabel, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        registry.register(
            "rpc_added_duration_seconds",
            "Time the proxy itself spent on a call: reading, encrypting and decrypting",
            added_seconds.clone(),
        );
        let unknown_methods = Family::<ActionLabel, Counter>::default();
        registry.register(
            "unknown_method_calls",
            "Calls to methods outside the payload schema, by what happened to them (refused, forwarded)",
            unknown_methods.clone(),
        );
        registry.register_collector(Box::new(CodecCollector { codec }));
        Self {
            registry,
            calls,
            upstream_seconds,
            added_seconds,
            unknown_methods,
        }
    }

    /// Reports, at each scrape, how much of `budget` is held and how often calls waited for
    /// it, and each listener's open and refused connections.
    pub fn watch_overload(&mut self, budget: Arc<MemoryBudget>, listeners: Vec<Arc<ConnectionCap>>) {
        self.registry
            .register_collector(Box::new(OverloadCollector { budget, listeners }));
    }

    /// Records one call to a method outside the payload schema.
    pub fn record_unknown_method(&self, action: crate::proxy::method_policy::UnknownMethodAction) {
        self.unknown_methods
            .get_or_create(&ActionLabel { action: action.label() })
            .inc();
    }

    /// Records one finished call.
    pub fn record_call(&self, method: &'static str, code: tonic::Code, upstream: Duration, added: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
        let label = MethodLabel { method };
        self.upstream_seconds
            .get_or_create(&label)
            .observe(upstream.as_secs_f64());
        self.added_seconds.get_or_create(&label).observe(added.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The canonical upper-case name of a gRPC status code, as gRPC tooling prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Reads the codec's and the KMS client's running totals at scrape time.
#[derive(Debug)]
struct CodecCollector {
    codec: Arc<Codec>,
}

impl prometheus_client::collector::Collector for CodecCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.codec.stats();
        let counters: [(&str, &str, &AtomicU64); 9] = [
            ("payloads_encrypted", "Payloads encrypted", &stats.payloads_encrypted),
            ("payloads_decrypted", "Payloads decrypted", &stats.payloads_decrypted),
            (
                "payload_bytes_encrypted",
                "Plaintext bytes of the payloads encrypted",
                &stats.plaintext_bytes_encrypted,
            ),
            (
                "payload_bytes_decrypted",
                "Plaintext bytes of the payloads decrypted",
                &stats.plaintext_bytes_decrypted,
            ),
            (
                "payloads_unknown_key",
                "Encrypted payloads under a key this proxy does not hold, passed through unchanged",
                &stats.payloads_unknown_key,
            ),
            (
                "payloads_failed_authentication",
                "Encrypted payloads under a held key that failed authentication (codec errors)",
                &stats.payloads_failed_authentication,
            ),
            (
                "payloads_encrypted_again",
                "Request payloads labelled binary/encrypted that no held key authenticated, encrypted once more",
                &stats.payloads_encrypted_again,
            ),
            (
                "unknown_fields",
                "Request fields the payload schema does not know, holding no payload, passed on unchanged",
                &stats.unknown_fields,
            ),
            (
                "payloads_other_namespace_key",
                "Encrypted payloads under another namespace's key than the call's, passed through still encrypted",
                &stats.payloads_other_namespace_key,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(metric)?;
        }
        let mut by_key = encoder.encode_descriptor(
            "static_key_encryptions",
            "Payloads this process encrypted with each static key (one key should encrypt at most 2^32 in all)",
            None,
            MetricType::Counter,
        )?;
        for key in self.codec.namespace_keys().static_keys() {
            let labels = [("key", key.id())];
            ConstCounter::new(key.encryptions()).encode(by_key.encode_family(&labels)?)?;
        }
        let Some(provider) = self.codec.provider() else {
            return Ok(());
        };
        let cache = provider;
        let stats = cache.stats();
        let operations = cache.operations();
        let mut calls = encoder.encode_descriptor(
            "key_provider_calls",
            "Calls to the key provider, by provider, operation and result (other_key: the wrapped key is under another key than the namespace's)",
            None,
            MetricType::Counter,
        )?;
        for (operation, result, value) in [
            (operations.generate, "ok", &stats.generate_ok),
            (operations.generate, "error", &stats.generate_failed),
            (operations.unwrap, "ok", &stats.unwrap_ok),
            (operations.unwrap, "error", &stats.unwrap_failed),
            (operations.unwrap, "other_key", &stats.unwrap_other_key),
        ] {
            let labels = [
                ("provider", cache.provider_name()),
                ("operation", operation),
                ("result", result),
            ];
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(calls.encode_family(&labels)?)?;
        }
        let mut lookups = encoder.encode_descriptor(
            "data_key_cache_lookups",
            "Data key cache look-ups, by provider, cache and outcome",
            None,
            MetricType::Counter,
        )?;
        for (cache_name, outcome, value) in [
            ("encryption", "hit", &stats.encryption_cache_hits),
            ("encryption", "miss", &stats.encryption_cache_misses),
            ("decryption", "hit", &stats.decryption_cache_hits),
            ("decryption", "miss", &stats.decryption_cache_misses),
        ] {
            let labels = [
                ("provider", cache.provider_name()),
                ("cache", cache_name),
                ("outcome", outcome),
            ];
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(lookups.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Reads the memory budget's and the listeners' state at scrape time.
struct OverloadCollector {
    budget: Arc<MemoryBudget>,
    listeners: Vec<Arc<ConnectionCap>>,
}

impl std::fmt::Debug for OverloadCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for OverloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let budget = &self.budget;
        let gauges = [
            (
                "buffered_bytes",
                "Bytes of messages held in memory for rewriting, under --max-buffered-bytes",
                budget.used(),
            ),
            (
                "buffered_bytes_limit",
                "The --max-buffered-bytes budget",
                budget.limit(),
            ),
            (
                "buffer_waiting_calls",
                "Calls waiting now for room under --max-buffered-bytes",
                budget.waiting(),
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)?;
        }
        let counters = [
            (
                "buffer_waits",
                "Times a call waited for room under --max-buffered-bytes",
                budget.waits(),
            ),
            (
                "buffer_refusals",
                "Calls failed with RESOURCE_EXHAUSTED because --max-buffered-bytes stayed full for --buffer-wait",
                budget.refusals(),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        type ListenerFigure = fn(&ConnectionCap) -> u64;
        let per_listener: [(&str, &str, MetricType, ListenerFigure); 3] = [
            (
                "listener_connections",
                "Connections each listener is serving now",
                MetricType::Gauge,
                |listener| listener.open() as u64,
            ),
            (
                "listener_connections_limit",
                "Connections each listener serves at most (--max-connections, --codec-max-connections)",
                MetricType::Gauge,
                |listener| listener.max() as u64,
            ),
            (
                "listener_connections_refused",
                "Connections each listener turned away because it was at its limit",
                MetricType::Counter,
                ConnectionCap::refused,
            ),
        ];
        for (name, help, kind, figure) in per_listener {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for listener in &self.listeners {
                let labels = [("listener", listener.listener())];
                let metric = family.encode_family(&labels)?;
                let value = figure(listener);
                if matches!(kind, MetricType::Counter) {
                    ConstCounter::new(value).encode(metric)?;
                } else {
                    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}
