//! The `temporal-codec-proxy` command: `serve` runs the proxy, `check-config` validates its
//! settings, `keygen` makes a key.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _};
use temporal_codec_proxy::codec::Codec;
use temporal_codec_proxy::config::{Cli, Command, ServeArgs, describe_effective};
use temporal_codec_proxy::config_file::{self, WithFile};
use temporal_codec_proxy::keys::aws_kms::AwsKms;
use temporal_codec_proxy::keys::cache::CachedKeys;
use temporal_codec_proxy::running_server::{ConnectionCap, Refusal};
use temporal_codec_proxy::telemetry::{self, Metrics};
use temporal_codec_proxy::{admin, codec_server, keys, proxy};

// The proxy allocates many short-lived buffers per call on every core; mimalloc's
// per-thread heaps serve them with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = Cli::command();
    let with_file = match config_file::merge(std::env::args_os().collect(), &command) {
        Ok(with_file) => with_file,
        Err(error) => return fail(&error),
    };
    let matches = command
        .clone()
        .try_get_matches_from(&with_file.args)
        .unwrap_or_else(|error| error.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::CheckConfig(mut args) => {
            args.namespaces = with_file.namespaces.clone();
            let serve_command = command
                .find_subcommand("check-config")
                .expect("check-config is a subcommand");
            let serve_matches = matches
                .subcommand_matches("check-config")
                .expect("check-config was chosen");
            check_config(&args, serve_matches, serve_command, &with_file)
        }
        Command::Keygen => match keys::generate_key_source() {
            Ok(source) => {
                println!("{}", source.as_str());
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Command::Serve(mut args) => {
            args.namespaces = with_file.namespaces.clone();
            telemetry::init_logging(&args.log, args.log_format);
            let open_files = match temporal_codec_proxy::open_files::raise_to_hard_limit() {
                Ok(limits) => {
                    tracing::info!(
                        soft_before = limits.soft_before,
                        soft = limits.soft,
                        hard = limits.hard,
                        "open-file limit"
                    );
                    limits.soft
                }
                Err(error) => {
                    tracing::warn!(%error, fallback = FALLBACK_OPEN_FILES, "could not raise the open-file limit");
                    FALLBACK_OPEN_FILES
                }
            };
            let runtime = match build_runtime() {
                Ok(runtime) => runtime,
                Err(error) => return fail(&error),
            };
            match runtime.block_on(serve(*args, open_files)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&*error),
            }
        }
    }
}

/// The open-file limit assumed when it cannot be read: Linux's usual default.
const FALLBACK_OPEN_FILES: u64 = 1024;

unsafe extern "C" {
    /// mimalloc's `mi_collect`: frees the calling thread's empty pages and returns memory
    /// whose purge delay has passed to the system.
    fn mi_collect(force: bool);
}

/// The least time between two collections on one runtime thread.
const COLLECT_INTERVAL: Duration = Duration::from_millis(10);
/// How often freed memory is handed back whether or not threads park: mimalloc returns
/// memory to the system only once it has been free for its purge delay, so the collection
/// a thread makes as it parks right after a spike comes too early for the spike's memory.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Run when a runtime thread runs out of work. mimalloc hands a thread's freed pages back
/// only when that thread allocates again, so a thread that goes idle after a spike would
/// keep the spike's memory; collecting as it parks returns it within moments.
fn return_freed_memory() {
    thread_local! {
        static LAST_COLLECTED: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    LAST_COLLECTED.with(|last| {
        let now = std::time::Instant::now();
        if last.get().is_none_or(|at| now.duration_since(at) >= COLLECT_INTERVAL) {
            last.set(Some(now));
            // SAFETY: mi_collect takes no pointers and may be called on any thread at any time.
            unsafe { mi_collect(false) };
        }
    });
}

/// Collects every `PURGE_INTERVAL` for as long as the runtime runs.
fn spawn_periodic_memory_return() {
    tokio::spawn(async {
        let mut ticks = tokio::time::interval(PURGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // SAFETY: as in `return_freed_memory`.
            unsafe { mi_collect(false) };
        }
    });
}

/// One thread that runs every task when the proxy may use one CPU (a sidecar's usual
/// limit, or an affinity mask): the multi-threaded scheduler's hand-offs and wake-ups cost
/// CPU time there and buy nothing. One worker per CPU otherwise. Large messages go to the
/// blocking pool either way.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (scheduler, mut builder) = if cpus == 1 {
        ("current-thread", tokio::runtime::Builder::new_current_thread())
    } else {
        ("multi-thread", tokio::runtime::Builder::new_multi_thread())
    };
    let runtime = builder.enable_all().on_thread_park(return_freed_memory).build()?;
    tracing::info!(cpus, scheduler, "started the async runtime");
    Ok(runtime)
}

/// Runs every check `serve` runs before it binds, without binding or calling anything.
fn check_config(
    args: &ServeArgs,
    matches: &clap::ArgMatches,
    command: &clap::Command,
    with_file: &WithFile,
) -> ExitCode {
    let schema = args.payload_schema();
    if let Ok(schema) = &schema {
        println!("# payload schema: {}", schema.summary());
    }
    let key_configuration = args.key_configuration();
    if let Ok(configuration) = &key_configuration {
        println!("# namespace keys:");
        print!("{}", configuration.keys.describe("aws-kms"));
    }
    let checks: [(&str, Result<(), String>); 8] = [
        ("payload schema", schema.map(drop)),
        ("memory budget", args.memory_budget().map(drop)),
        ("upstream", args.upstream_settings().map(drop)),
        ("upstream credentials", args.upstream_credentials().map(drop)),
        ("gRPC listener", args.grpc_listener().map(drop)),
        ("codec server", args.codec_server().map(drop)),
        ("keys", key_configuration.map(drop)),
        ("log filter", telemetry::parse_log_filter(&args.log).map(drop)),
    ];
    if let Some(path) = &with_file.path {
        println!("# configuration file: {}", path.display());
    }
    print!("{}", describe_effective(matches, command, &with_file.from_file));
    let mut valid = true;
    for (what, result) in checks {
        if let Err(error) = result {
            eprintln!("temporal-codec-proxy: {what}: {error}");
            valid = false;
        }
    }
    if valid {
        eprintln!("temporal-codec-proxy: configuration is valid");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("temporal-codec-proxy: {error}");
    ExitCode::FAILURE
}

async fn serve(args: ServeArgs, open_files: u64) -> Result<(), Box<dyn std::error::Error>> {
    spawn_periodic_memory_return();
    let schema = args.payload_schema()?;
    tracing::info!(schema = %schema.summary(), "finding payloads by the Temporal API schema");
    let upstream = args.upstream_settings()?;
    let upstream_name = upstream.address.clone();
    let credentials = args.upstream_credentials()?;
    let (listener_tls, caller_policy) = args.grpc_listener()?;
    let codec_server_settings = args.codec_server()?;
    let budget = args.memory_budget()?;
    let (connection_limits, lowered) = args.connection_limits(open_files);
    if let Some(lowered) = lowered {
        tracing::warn!("{lowered}");
    }
    let grpc_cap = ConnectionCap::new(
        "gRPC",
        "--max-connections",
        connection_limits.grpc,
        Refusal::Http2GoAway.unless_tls(listener_tls.is_some()),
    );
    let codec_cap = ConnectionCap::new(
        "codec-server",
        "--codec-max-connections",
        connection_limits.codec,
        Refusal::Http1Unavailable.unless_tls(codec_server_settings.tls.is_some()),
    );
    let codec = Arc::new(
        build_codec(&args)
            .await?
            .with_message_limit(args.max_message_bytes)
            .with_schema(schema),
    );
    let upstream_client = proxy::upstream::connect_lazy(&upstream)?;
    let mut metrics = Metrics::new(Arc::clone(&codec));
    metrics.watch_overload(Arc::clone(&budget), vec![Arc::clone(&grpc_cap), Arc::clone(&codec_cap)]);
    let metrics = Arc::new(metrics);
    let admin_server = admin::start(
        args.admin_listen,
        admin::router(
            Arc::clone(&metrics),
            Arc::clone(&codec),
            upstream_client.clone(),
            Arc::clone(&budget),
        ),
    )
    .await
    .map_err(|error| {
        format!(
            "cannot listen on {} for the admin endpoints: {error}",
            args.admin_listen
        )
    })?;
    tracing::info!(listen = %admin_server.local_addr(), "serving /metrics, /healthz and /readyz");
    let forwarder = Arc::new(
        proxy::Forwarder::new(
            Arc::clone(&codec),
            upstream_client,
            upstream_name.clone(),
            args.max_message_bytes,
            metrics,
        )
        .with_credentials(credentials)
        .with_caller_policy(caller_policy)
        .with_unknown_methods(args.unknown_methods)
        .with_budget(Arc::clone(&budget))
        .with_request_body_timeout(args.request_body_timeout),
    );
    let listener_uses_tls = listener_tls.is_some();
    let listener = proxy::start(
        args.listen,
        forwarder,
        listener_tls,
        Arc::clone(&grpc_cap),
        proxy::listener::CallerConnections {
            max_concurrent_streams: args.max_concurrent_streams,
            keepalive_interval: args.listen_keepalive_interval,
            keepalive_timeout: args.listen_keepalive_timeout,
        },
    )
    .await
    .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr(),
        upstream = %upstream_name,
        tls = listener_uses_tls,
        upstream_tls = upstream.tls.is_some(),
        max_connections = connection_limits.grpc,
        max_concurrent_streams = args.max_concurrent_streams,
        max_buffered_bytes = args.max_buffered_bytes,
        "proxying gRPC calls"
    );
    let codec_server = codec_server::start(
        args.codec_listen,
        codec_server::router(codec, &codec_server_settings, Arc::clone(&budget)),
        codec_server_settings.tls.clone(),
        Arc::clone(&codec_cap),
    )
    .await
    .map_err(|error| format!("cannot listen on {} for the codec server: {error}", args.codec_listen))?;
    tracing::info!(
        listen = %codec_server.local_addr(),
        tls = codec_server_settings.tls.is_some(),
        auth = ?args.codec_auth,
        max_connections = connection_limits.codec,
        "serving the codec-server API"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing calls in flight");
    tokio::join!(
        listener.shutdown(args.shutdown_grace),
        codec_server.shutdown(args.shutdown_grace)
    );
    // Metrics stay readable while calls drain.
    admin_server.shutdown(Duration::from_secs(1)).await;
    tracing::info!("stopped");
    Ok(())
}

/// The codec over every namespace's keys, with AWS KMS behind its cache when a namespace uses it.
async fn build_codec(args: &ServeArgs) -> Result<Codec, String> {
    let configuration = args.key_configuration()?;
    let provider = match &configuration.kms {
        Some(kms) => Some(CachedKeys::new(Arc::new(AwsKms::new(&kms.client).await), kms.cache)),
        None => None,
    };
    for line in configuration.keys.describe("aws-kms").lines() {
        tracing::info!("namespace keys: {}", line.trim_start_matches('#').trim());
    }
    Ok(Codec::with_namespaces(configuration.keys, provider, args.policy()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
