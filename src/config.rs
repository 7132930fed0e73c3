//! Command-line flags and their environment variables, parsed once into typed settings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::codec::EncryptionPolicy;

/// Default limit on one gRPC message, as the Temporal SDKs set it: large history pages fit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "temporal-codec-proxy",
    version,
    about = "A gRPC proxy for Temporal that encrypts every payload on its way to the server \
             and decrypts it on its way back.",
    long_about = "A gRPC proxy for Temporal that encrypts every payload on its way to the server \
                  and decrypts it on its way back.\n\n\
                  Point your workers and clients at the proxy instead of the Temporal frontend; \
                  the server then stores only ciphertext, in the AES-256-GCM format of \
                  Temporal's encryption samples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Print a new random AES-256 key as a SOURCE string for --key.
    Keygen,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address workers connect to (set TEMPORAL_ADDRESS of your workers to it).
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_LISTEN",
        default_value = "127.0.0.1:7233",
        value_name = "HOST:PORT"
    )]
    pub listen: SocketAddr,

    /// The Temporal frontend to forward to. Falls back to TEMPORAL_ADDRESS when neither
    /// this flag nor TEMPORAL_CODEC_PROXY_UPSTREAM is set.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_UPSTREAM", value_name = "HOST:PORT")]
    pub upstream: Option<String>,

    /// An AES-256 key as ID=SOURCE; repeat for more keys. The first key encrypts, all of
    /// them decrypt, so old keys stay readable after rotation. SOURCE is base64:<key>,
    /// hex:<key>, file:<path> (32 raw bytes, or the key as base64/hex text) or
    /// env:<variable>. In the environment: a comma-separated list.
    #[arg(
        long = "key",
        env = "TEMPORAL_CODEC_PROXY_KEYS",
        value_name = "ID=SOURCE",
        value_delimiter = ',',
        hide_env_values = true,
        required = true
    )]
    pub keys: Vec<String>,

    /// Largest gRPC message accepted in either direction, in bytes, after decompression.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_name = "BYTES")]
    pub max_message_bytes: usize,

    /// Encrypt header payloads (`Header.fields`, which may carry propagated context).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_ENCRYPT_HEADERS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub encrypt_headers: bool,

    /// Encrypt user metadata (workflow summaries and details shown in the UI). The server
    /// caps a summary at 400 bytes including encryption overhead.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_ENCRYPT_USER_METADATA", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub encrypt_user_metadata: bool,

    /// Encrypt operator data: worker deployment metadata and Nexus endpoint descriptions,
    /// which controllers and the UI read.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_ENCRYPT_OPERATOR_DATA", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub encrypt_operator_data: bool,

    /// On SIGTERM or SIGINT, how long calls in flight may take to finish before their
    /// connections are closed.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Log filter in tracing's env-filter syntax, e.g. `info` or `temporal_codec_proxy=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,
}

impl ServeArgs {
    /// The upstream address from the flag, its variable, or TEMPORAL_ADDRESS.
    pub fn upstream(&self) -> Result<String, String> {
        self.upstream
            .clone()
            .or_else(|| std::env::var("TEMPORAL_ADDRESS").ok().filter(|v| !v.is_empty()))
            .ok_or_else(|| "no upstream: pass --upstream HOST:PORT or set TEMPORAL_ADDRESS".to_owned())
    }

    pub fn policy(&self) -> EncryptionPolicy {
        EncryptionPolicy {
            headers: self.encrypt_headers,
            user_metadata: self.encrypt_user_metadata,
            operator_data: self.encrypt_operator_data,
        }
    }
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |at| text.split_at(at));
    let amount: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(amount)),
        "s" => Ok(Duration::from_secs(amount)),
        "m" => Ok(Duration::from_secs(amount * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn help_explains_every_flag() {
        use clap::CommandFactory as _;
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        for argument in serve.get_arguments() {
            assert!(argument.get_help().is_some(), "--{} has no help", argument.get_id());
        }
    }
}
