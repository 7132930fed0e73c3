//! Command-line flags and their environment variables, parsed once into typed settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use crate::auth::claims_roles::ClaimsRoles;
use crate::auth::cloud_roles::{self, CloudRoles, CloudRolesSettings};
use crate::auth::jwt::{self, JwtSettings, JwtVerifier, TokenSource};
use crate::auth::{Authenticator, RoleSource};
use crate::codec::EncryptionPolicy;
use crate::codec_server::{CodecServerSettings, DEFAULT_CORS_ORIGINS, tls};
use crate::keys::aws_kms::AwsKmsSettings;
use crate::keys::cache::{CacheSettings, DataKeyLimits, MAX_PAYLOADS_PER_DATA_KEY};
use crate::keys::namespaces::{KeySet, NamespaceKeys, SectionSpec, build_sections};
use crate::keys::{KeySelector, Keyring, load_keyring};
use crate::memory_budget::MemoryBudget;
use crate::payload::schema::Schema;
use crate::proxy::forward::{CallerPolicy, UpstreamCredentials};
use crate::proxy::method_policy::UnknownMethods;
use crate::proxy::upstream::{UpstreamSettings, UpstreamTls};
use crate::telemetry::LogFormat;

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
    Serve(Box<ServeArgs>),
    /// Validate the configuration (flags, environment, file) and print the effective
    /// settings, secrets redacted.
    CheckConfig(Box<ServeArgs>),
    /// Print a new random AES-256 key as a SOURCE string for --key.
    Keygen,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with settings under their long flag names (`listen = "0.0.0.0:7233"`,
    /// `key = ["a=file:/keys/a"]`); flags and environment variables override it.
    #[arg(long, env = crate::config_file::CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,

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

    /// Serve the gRPC listener over TLS with this certificate chain (PEM): gateway mode,
    /// one proxy shared by workers on other hosts.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_LISTEN_TLS_CERT",
        requires = "listen_tls_key",
        value_name = "PATH"
    )]
    pub listen_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the gRPC listener's certificate.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_LISTEN_TLS_KEY",
        requires = "listen_tls_cert",
        value_name = "PATH"
    )]
    pub listen_tls_key: Option<PathBuf>,

    /// Require callers of the gRPC listener to present a client certificate signed by this
    /// CA (PEM); calls without one get UNAUTHENTICATED. Needs --listen-tls-cert.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_LISTEN_CLIENT_CA",
        requires = "listen_tls_cert",
        value_name = "PATH"
    )]
    pub listen_client_ca: Option<PathBuf>,

    /// Authentication of gRPC callers: `jwt` requires `authorization: Bearer <JWT>` signed
    /// by a key in --listen-jwks-url.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_AUTH", value_enum, default_value_t = CodecAuth::None)]
    pub listen_auth: CodecAuth,

    /// JWKS that signs gRPC callers' tokens (with --listen-auth jwt).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_JWKS_URL", value_name = "URL")]
    pub listen_jwks_url: Option<String>,

    /// Audience gRPC callers' tokens must carry; repeatable.
    #[arg(
        long = "listen-jwt-audience",
        env = "TEMPORAL_CODEC_PROXY_LISTEN_JWT_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUDIENCE"
    )]
    pub listen_jwt_audiences: Vec<String>,

    /// Issuer gRPC callers' tokens must carry.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_JWT_ISSUER", value_name = "ISSUER")]
    pub listen_jwt_issuer: Option<String>,

    /// Least time between two fetches of --listen-jwks-url caused by tokens naming an
    /// unknown key id: a key the identity provider adds is accepted after at most this long.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_JWKS_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub listen_jwks_refresh_interval: Duration,

    /// Where gRPC callers' JWTs are read from: `authorization` (`Bearer <JWT>`),
    /// `authorization-extras`, or `either` (a JWT that verifies in `authorization` wins).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_TOKEN_FROM", value_enum, default_value_t = TokenSource::Either)]
    pub listen_token_from: TokenSource,

    /// Serve the gRPC listener on a non-loopback address without client certificates or
    /// JWTs: anyone who reaches it reads and writes plaintext payloads. Only for networks
    /// where something else authenticates callers.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_ALLOW_UNAUTHENTICATED_PLAINTEXT")]
    pub listen_allow_unauthenticated_plaintext: bool,

    /// HTTP/2 connections to the upstream; each call goes on the one with the fewest calls
    /// waiting. One suits a sidecar. A gateway serving many workers can spread their calls
    /// over several frontend instances behind a load balancer, and past the upstream's limit
    /// of concurrent streams per connection.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_UPSTREAM_CONNECTIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=crate::proxy::upstream::MAX_CONNECTIONS as i64), value_name = "N")]
    pub upstream_connections: u16,

    /// Speak TLS to the upstream. Unset, it is on for port 443, an https:// address, or
    /// when any other upstream TLS setting is given.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_UPSTREAM_TLS", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub upstream_tls: Option<bool>,

    /// CA certificates (PEM) that sign the upstream's certificate, instead of the system's.
    #[arg(long, env = "TEMPORAL_TLS_CA", value_name = "PATH")]
    pub upstream_ca: Option<PathBuf>,

    /// Name the upstream's certificate is verified against, when not the address's host.
    #[arg(long, env = "TEMPORAL_TLS_SERVER_NAME", value_name = "NAME")]
    pub upstream_server_name: Option<String>,

    /// Client certificate chain (PEM) for mTLS to the upstream, e.g. Temporal Cloud.
    #[arg(long, env = "TEMPORAL_TLS_CERT", requires = "upstream_tls_key", value_name = "PATH")]
    pub upstream_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the mTLS client certificate.
    #[arg(long, env = "TEMPORAL_TLS_KEY", requires = "upstream_tls_cert", value_name = "PATH")]
    pub upstream_tls_key: Option<PathBuf>,

    /// How often TLS files are checked for changes (cert-manager rotates them): the upstream
    /// CA, certificate and key, the gRPC listener's certificate and client CA, and the codec
    /// server's certificate.
    /// New connections use the new ones; open connections carry on.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub tls_reload_interval: Duration,

    /// Temporal Cloud API key: sent upstream as `authorization: Bearer <key>` on every call,
    /// replacing whatever the caller sent, so workers carry no credentials.
    #[arg(long, env = "TEMPORAL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub upstream_api_key: Option<String>,

    /// Namespace for the `temporal-namespace` header on calls that carry none and name
    /// none in their request (Temporal Cloud routes API-key calls by it).
    #[arg(long, env = "TEMPORAL_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// An AES-256 key as ID=SOURCE; repeat for more keys. The first key encrypts, all of
    /// them decrypt, so old keys stay readable after rotation. SOURCE is base64:<key>,
    /// hex:<key>, file:<path> (32 raw bytes, or the key as base64/hex text) or
    /// env:<variable>. In the environment: a comma-separated list. With [namespaces]
    /// sections in the configuration file, these keys serve the namespaces no section names.
    #[arg(
        long = "key",
        env = "TEMPORAL_CODEC_PROXY_KEYS",
        value_name = "ID=SOURCE",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub keys: Vec<String>,

    /// Encrypt with AWS KMS envelope encryption under this KMS key (ARN, id or alias) for
    /// every namespace. Static --key keys still decrypt, so moving to KMS loses nothing.
    #[arg(long, env = "AWS_KMS_CMK_ARN", value_name = "ARN|ALIAS")]
    pub kms_key: Option<String>,

    /// Encrypt each namespace under its own KMS key: `{namespace}` is replaced by the
    /// namespace with `.` written as `_`, e.g. `alias/{namespace}`.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_KMS_KEY_TEMPLATE",
        conflicts_with = "kms_key",
        value_name = "TEMPLATE"
    )]
    pub kms_key_template: Option<String>,

    /// KMS endpoint URL (a VPC endpoint, or an emulator in tests).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_KMS_ENDPOINT", value_name = "URL")]
    pub kms_endpoint: Option<String>,

    /// AWS region of the KMS key; defaults to the standard AWS configuration (AWS_REGION, profile).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_KMS_REGION", value_name = "REGION")]
    pub kms_region: Option<String>,

    /// Longest time one KMS data key encrypts payloads before a new one is generated.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_KMS_DATA_KEY_MAX_AGE", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub kms_data_key_max_age: Duration,

    /// Most payloads one KMS data key encrypts (at most 2^32: nonces are random).
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_KMS_DATA_KEY_MAX_PAYLOADS",
        default_value_t = 1_000_000,
        value_name = "COUNT"
    )]
    pub kms_data_key_max_payloads: u64,

    /// Most plaintext bytes one KMS data key encrypts.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_KMS_DATA_KEY_MAX_BYTES", default_value_t = 64 << 30, value_name = "BYTES")]
    pub kms_data_key_max_bytes: u64,

    /// How long a data key unwrapped by KMS `Decrypt` is kept for further payloads.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_KMS_DECRYPT_CACHE_TTL", default_value = "60m", value_parser = parse_duration, value_name = "DURATION")]
    pub kms_decrypt_cache_ttl: Duration,

    /// Most unwrapped data keys kept.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_KMS_DECRYPT_CACHE_CAPACITY",
        default_value_t = 10_000,
        value_name = "COUNT"
    )]
    pub kms_decrypt_cache_capacity: u64,

    /// Largest gRPC message accepted in either direction, in bytes, after decompression, and
    /// largest message the proxy sends once it has encrypted or decrypted the payloads.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_parser = parse_message_limit, value_name = "BYTES")]
    pub max_message_bytes: usize,

    /// Total bytes of messages the gRPC listener and the codec server together hold in memory
    /// at once to rewrite their payloads; about half the container's memory limit (what the
    /// Helm chart sets). A call that would pass it waits up to --buffer-wait, then fails with
    /// RESOURCE_EXHAUSTED (503 on the codec server). Calls under 64 KiB are never refused for it.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_MAX_BUFFERED_BYTES", default_value_t = crate::memory_budget::DEFAULT_MAX_BUFFERED_BYTES, value_name = "BYTES")]
    pub max_buffered_bytes: usize,

    /// How long a call waits for room under --max-buffered-bytes before it fails.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_BUFFER_WAIT", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub buffer_wait: Duration,

    /// Connections the gRPC listener serves at once; one more gets an HTTP/2 GOAWAY naming
    /// this limit and is closed. Default: what the open-file limit leaves after the codec
    /// server's and the admin listener's connections and a reserve for upstream and KMS.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<usize>,

    /// Concurrent calls (HTTP/2 streams) one gRPC connection may carry; the listener
    /// advertises it in its SETTINGS, so clients queue or open another connection.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_MAX_CONCURRENT_STREAMS",
        default_value_t = 1024,
        value_name = "COUNT"
    )]
    pub max_concurrent_streams: u32,

    /// How long a caller's gRPC connection may be quiet before the listener sends it an
    /// HTTP/2 PING, so that a peer gone without closing (a killed pod, a dropped NAT entry)
    /// is noticed and its connection freed.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub listen_keepalive_interval: Duration,

    /// How long the listener waits for a PING's answer before it closes the connection.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LISTEN_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub listen_keepalive_timeout: Duration,

    /// How long a gRPC request body may take to arrive once its headers have; a call whose
    /// body stops arriving fails with DEADLINE_EXCEEDED and gives back what it held.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_REQUEST_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_body_timeout: Duration,

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

    /// Move failure messages and stack traces into an encrypted payload, leaving "Encoded
    /// failure" as the message the server stores (the SDKs' "encode common attributes").
    /// They are put back on the way to the worker either way.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_ENCRYPT_FAILURE_MESSAGES", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub encrypt_failure_messages: bool,

    /// A serialized `google.protobuf.FileDescriptorSet` of a Temporal API (as `protoc
    /// --descriptor_set_out --include_imports` or `buf build -o` write it), to find payloads by
    /// instead of the API compiled into the proxy: a newer API's methods and fields are then
    /// encrypted without a new release.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_DESCRIPTORS", value_name = "FILE")]
    pub descriptors: Option<PathBuf>,

    /// Calls to methods outside the proxy's Temporal API schema: `refuse` answers
    /// UNIMPLEMENTED (their payloads could not be found, so they would go out unencrypted);
    /// `forward` sends them on byte for byte and counts them. Health checks and server
    /// reflection are always forwarded.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_UNKNOWN_METHODS", value_enum, default_value_t = UnknownMethods::Refuse)]
    pub unknown_methods: UnknownMethods,

    /// Address of the codec-server HTTP API (`/encode`, `/decode`) for the Web UI and CLI.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_CODEC_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "HOST:PORT"
    )]
    pub codec_listen: SocketAddr,

    /// An origin allowed to call the codec server from a browser (repeatable). Defaults to
    /// the self-hosted Web UI, the dev server's UI and Temporal Cloud's UI.
    #[arg(
        long = "codec-cors-origin",
        env = "TEMPORAL_CODEC_PROXY_CODEC_CORS_ORIGINS",
        value_delimiter = ',',
        default_values_t = DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()),
        value_name = "ORIGIN"
    )]
    pub codec_cors_origins: Vec<String>,

    /// Largest request body the codec server reads, in bytes.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub codec_max_body_bytes: usize,

    /// Connections the codec server serves at once; one more gets `503` naming this limit.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_CODEC_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "COUNT"
    )]
    pub codec_max_connections: usize,

    /// How long a codec-server request body may take to arrive once its head has; a body
    /// that trickles in or stops gets 408 and its connection is closed.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub codec_body_timeout: Duration,

    /// How codec-server callers are authenticated. `none` is refused on a non-loopback
    /// address unless --codec-allow-unauthenticated-decryption is given.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_AUTH", value_enum, default_value_t = CodecAuth::None)]
    pub codec_auth: CodecAuth,

    /// PEM certificate chain for serving the codec server over HTTPS (with --codec-tls-key).
    /// The Web UI only sends a user's token to an HTTPS codec endpoint.
    #[arg(long, env = "SSL_PEM", requires = "codec_tls_key", value_name = "PATH")]
    pub codec_tls_cert: Option<PathBuf>,

    /// PEM private key for --codec-tls-cert.
    #[arg(long, env = "SSL_KEY", requires = "codec_tls_cert", value_name = "PATH")]
    pub codec_tls_key: Option<PathBuf>,

    /// JWKS URL the codec server verifies bearer tokens against (with --codec-auth jwt).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_JWKS_URL", default_value = jwt::DEFAULT_JWKS_URL, value_name = "URL")]
    pub codec_jwks_url: String,

    /// Accepted token audience (repeatable). Defaults to Temporal Cloud's.
    #[arg(
        long = "codec-jwt-audience",
        env = "TEMPORAL_CODEC_PROXY_CODEC_JWT_AUDIENCES",
        value_delimiter = ',',
        default_values_t = jwt::DEFAULT_AUDIENCES.iter().map(|a| a.to_string()),
        value_name = "AUDIENCE"
    )]
    pub codec_jwt_audiences: Vec<String>,

    /// Required token issuer (`iss`); any issuer when unset.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_JWT_ISSUER", value_name = "ISSUER")]
    pub codec_jwt_issuer: Option<String>,

    /// Least time between two fetches of --codec-jwks-url caused by tokens naming an
    /// unknown key id: a key the identity provider adds is accepted after at most this long.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_JWKS_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub codec_jwks_refresh_interval: Duration,

    /// Where codec-server callers' JWTs are read from: `authorization` (`Bearer <JWT>`),
    /// `authorization-extras` (the ID token the Web UI sends with OIDC login), or `either`
    /// (a JWT that verifies in `authorization` wins, else the one in `authorization-extras`).
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_TOKEN_FROM", value_enum, default_value_t = TokenSource::Either)]
    pub codec_token_from: TokenSource,

    /// Token claim holding the user's email.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_EMAIL_CLAIM", default_value = jwt::DEFAULT_EMAIL_CLAIM, value_name = "CLAIM")]
    pub codec_email_claim: String,

    /// Where an authenticated user's permission to decrypt comes from: `cloud` asks the
    /// Temporal Cloud Ops API, `claims` reads the token's permissions claim.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_ROLES_FROM", value_enum, default_value_t = RolesFrom::Cloud)]
    pub codec_roles_from: RolesFrom,

    /// With --codec-roles-from claims: the claim listing "<namespace>:<role>" entries.
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_CODEC_PERMISSIONS_CLAIM",
        default_value = "permissions",
        value_name = "CLAIM"
    )]
    pub codec_permissions_claim: String,

    /// With --codec-roles-from claims: roles that may decrypt (repeatable).
    #[arg(long = "codec-claim-role", env = "TEMPORAL_CODEC_PROXY_CODEC_CLAIM_ROLES", value_delimiter = ',', default_values_t = ["read", "write", "admin"].map(String::from), value_name = "ROLE")]
    pub codec_claim_roles: Vec<String>,

    /// Temporal Cloud API key for the Ops API (with --codec-roles-from cloud).
    #[arg(long, env = "TEMPORAL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub cloud_api_key: Option<String>,

    /// Address of the Temporal Cloud Ops API (`http://` for plaintext, otherwise TLS).
    #[arg(long, env = "TEMPORAL_OPS_ADDRESS", default_value = cloud_roles::DEFAULT_OPS_ADDRESS, value_name = "HOST:PORT")]
    pub cloud_ops_address: String,

    /// Value of the `temporal-cloud-api-version` header sent to the Ops API.
    #[arg(long, env = "TEMPORAL_OPS_API_VERSION", default_value = cloud_roles::DEFAULT_OPS_API_VERSION, value_name = "VERSION")]
    pub cloud_ops_api_version: String,

    /// Account roles that may decrypt in every namespace (repeatable).
    #[arg(long = "cloud-account-role", env = "TEMPORAL_CODEC_PROXY_CLOUD_ACCOUNT_ROLES", value_delimiter = ',', default_values_t = ["owner", "admin"].map(String::from), value_name = "ROLE")]
    pub cloud_account_roles: Vec<String>,

    /// Namespace permissions that may decrypt in that namespace (repeatable).
    #[arg(long = "cloud-namespace-permission", env = "TEMPORAL_CODEC_PROXY_CLOUD_NAMESPACE_PERMISSIONS", value_delimiter = ',', default_values_t = ["read", "write", "admin"].map(String::from), value_name = "PERMISSION")]
    pub cloud_namespace_permissions: Vec<String>,

    /// How long Ops API answers about a user are cached.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CLOUD_ROLES_CACHE_TTL", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub cloud_roles_cache_ttl: Duration,

    /// How long "no such user" answers are cached.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CLOUD_ROLES_NEGATIVE_CACHE_TTL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub cloud_roles_negative_cache_ttl: Duration,

    /// Serve /decode without authentication on a non-loopback address: anyone who can reach
    /// it can read every payload. Only for networks where something else guards the port.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_CODEC_ALLOW_UNAUTHENTICATED_DECRYPTION")]
    pub codec_allow_unauthenticated_decryption: bool,

    /// The configuration file's `[namespaces."…"]` sections; no flag sets them.
    #[arg(skip)]
    pub namespaces: Vec<SectionSpec>,

    /// On SIGTERM or SIGINT, how long calls in flight may take to finish before their
    /// connections are closed.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Address of the admin HTTP listener: `/metrics` (Prometheus), `/healthz` (liveness)
    /// and `/readyz` (a key is loaded and the upstream answers its health check).
    #[arg(
        long,
        env = "TEMPORAL_CODEC_PROXY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        value_name = "HOST:PORT"
    )]
    pub admin_listen: SocketAddr,

    /// Log filter in tracing's env-filter syntax, e.g. `info` or `temporal_codec_proxy=debug`
    /// (each call is logged at debug with its method, status and durations).
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,

    /// Log line format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "TEMPORAL_CODEC_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Authentication of codec-server callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecAuth {
    /// No authentication: only for loopback, or behind something that authenticates.
    None,
    /// `Authorization: Bearer` JWTs verified against a JWKS.
    Jwt,
}

/// Source of codec-server callers' permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RolesFrom {
    /// Temporal Cloud's Ops API: account role or namespace permission.
    Cloud,
    /// The token's permissions claim (`"<namespace>:<role>"` entries).
    Claims,
}

/// Settings whose values are secrets: printed redacted.
const SECRET_SETTINGS: &[&str] = &["upstream_api_key", "cloud_api_key"];
/// Key sources that hold the key itself rather than naming where it is.
const INLINE_KEY_SOURCES: &[&str] = &["base64:", "hex:"];

/// The effective settings of `serve` as TOML, each with where it came from; secrets and
/// inline keys are redacted.
pub fn describe_effective(
    matches: &clap::ArgMatches,
    command: &clap::Command,
    from_file: &std::collections::BTreeSet<String>,
) -> String {
    use clap::parser::ValueSource;
    let mut out = String::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if id == "config" || id == "help" {
            continue;
        }
        let Some(raw) = matches.get_raw(id) else {
            out.push_str(&format!("# {long}: not set\n"));
            continue;
        };
        let source = if from_file.contains(id) {
            "file"
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                _ => "default",
            }
        };
        let values: Vec<String> = raw
            .map(|value| redact(id, &value.to_string_lossy()))
            .map(|value| toml::Value::String(value).to_string())
            .collect();
        let rendered = if matches!(arg.get_action(), clap::ArgAction::Append) {
            format!("[{}]", values.join(", "))
        } else {
            values.join(", ")
        };
        out.push_str(&format!("{long} = {rendered}  # {source}\n"));
    }
    out
}

fn redact(id: &str, value: &str) -> String {
    if SECRET_SETTINGS.contains(&id) {
        return "<redacted>".to_owned();
    }
    if id == "keys"
        && let Some((key_id, source)) = value.split_once('=')
        && let Some(kind) = INLINE_KEY_SOURCES.iter().find(|kind| source.starts_with(**kind))
    {
        return format!("{key_id}={kind}<redacted>");
    }
    value.to_owned()
}

impl ServeArgs {
    /// The codec server's settings, refusing an unauthenticated non-loopback listener.
    pub fn codec_server(&self) -> Result<CodecServerSettings, String> {
        if self.codec_auth == CodecAuth::None
            && !self.codec_listen.ip().is_loopback()
            && !self.codec_allow_unauthenticated_decryption
        {
            return Err(format!(
                "refusing to serve the codec server without authentication on {}: anyone who reaches it could \
                 decrypt every payload. Use --codec-auth jwt, listen on loopback, or pass \
                 --codec-allow-unauthenticated-decryption if something else guards the port",
                self.codec_listen
            ));
        }
        let cors_origins = self
            .codec_cors_origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin.trim_end_matches('/'))
                    .map_err(|_| format!("--codec-cors-origin {origin:?} is not a valid origin"))
            })
            .collect::<Result<_, _>>()?;
        let tls = match (&self.codec_tls_cert, &self.codec_tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::server_config(cert, key, Some(self.tls_reload_interval)).map_err(|error| error.to_string())?)
            }
            _ => None,
        };
        Ok(CodecServerSettings {
            cors_origins,
            max_body_bytes: self.codec_max_body_bytes,
            body_timeout: self.codec_body_timeout,
            authenticator: self.authenticator()?.map(Arc::new),
            tls,
        })
    }

    fn authenticator(&self) -> Result<Option<Authenticator>, String> {
        if self.codec_auth == CodecAuth::None {
            return Ok(None);
        }
        let verifier = JwtVerifier::new(JwtSettings {
            jwks_url: self.codec_jwks_url.clone(),
            audiences: self.codec_jwt_audiences.clone(),
            issuer: self.codec_jwt_issuer.clone(),
            email_claim: self.codec_email_claim.clone(),
            refetch_interval: self.codec_jwks_refresh_interval,
            token_source: self.codec_token_from,
        });
        let roles = match self.codec_roles_from {
            RolesFrom::Claims => RoleSource::Claims(ClaimsRoles {
                claim: self.codec_permissions_claim.clone(),
                roles: self.codec_claim_roles.iter().cloned().collect(),
            }),
            RolesFrom::Cloud => {
                let api_key = self.cloud_api_key.clone().filter(|key| !key.is_empty()).ok_or(
                    "--codec-roles-from cloud needs a Temporal Cloud API key: pass --cloud-api-key or set TEMPORAL_API_KEY",
                )?;
                let settings = CloudRolesSettings {
                    address: self.cloud_ops_address.clone(),
                    api_key: Arc::new(Zeroizing::new(api_key)),
                    api_version: self.cloud_ops_api_version.clone(),
                    account_roles: self.cloud_account_roles.iter().cloned().collect(),
                    namespace_permissions: self.cloud_namespace_permissions.iter().cloned().collect(),
                    cache_ttl: self.cloud_roles_cache_ttl,
                    negative_cache_ttl: self.cloud_roles_negative_cache_ttl,
                };
                RoleSource::Cloud(Box::new(CloudRoles::new(settings).map_err(|error| error.to_string())?))
            }
        };
        Ok(Some(Authenticator::new(verifier, roles)))
    }

    /// The upstream address from the flag, its variable, or TEMPORAL_ADDRESS.
    pub fn upstream(&self) -> Result<String, String> {
        self.upstream
            .clone()
            .or_else(|| std::env::var("TEMPORAL_ADDRESS").ok().filter(|v| !v.is_empty()))
            .ok_or_else(|| "no upstream: pass --upstream HOST:PORT or set TEMPORAL_ADDRESS".to_owned())
    }

    /// The gRPC listener's TLS and caller policy, refusing an unauthenticated listener on a
    /// non-loopback address.
    /// The connection caps of the gRPC listener and the codec server, within `open_files`
    /// file descriptors; the second value says why the gRPC cap is lower than asked, if it is.
    pub fn connection_limits(&self, open_files: u64) -> (ConnectionLimits, Option<String>) {
        let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
        let for_grpc = open_files
            .saturating_sub(
                RESERVED_FILE_DESCRIPTORS + crate::admin::ADMIN_MAX_CONNECTIONS + self.codec_max_connections,
            )
            .max(MIN_GRPC_CONNECTIONS);
        let limits = ConnectionLimits {
            grpc: self.max_connections.map_or(for_grpc, |asked| asked.min(for_grpc)),
            codec: self.codec_max_connections,
        };
        let lowered = self.max_connections.filter(|&asked| asked > for_grpc).map(|asked| {
            format!(
                "--max-connections {asked} lowered to {for_grpc}: the open-file limit is {open_files}, of which \
                 {} are kept for the codec server, the admin listener, upstream and KMS",
                open_files.saturating_sub(for_grpc)
            )
        });
        (limits, lowered)
    }

    /// The memory budget for buffered messages; it must hold at least one message, and one
    /// codec-server request, of the largest size accepted.
    pub fn memory_budget(&self) -> Result<Arc<MemoryBudget>, String> {
        if self.max_buffered_bytes < self.max_message_bytes {
            return Err(format!(
                "--max-buffered-bytes {} is smaller than --max-message-bytes {}: a message of the \
                 largest size accepted could never be buffered",
                self.max_buffered_bytes, self.max_message_bytes
            ));
        }
        if self.max_buffered_bytes < self.codec_max_body_bytes {
            return Err(format!(
                "--max-buffered-bytes {} is smaller than --codec-max-body-bytes {}: a codec-server \
                 request of the largest size accepted could never be buffered",
                self.max_buffered_bytes, self.codec_max_body_bytes
            ));
        }
        Ok(MemoryBudget::new(self.max_buffered_bytes, self.buffer_wait))
    }

    pub fn grpc_listener(&self) -> Result<(Option<Arc<rustls::ServerConfig>>, CallerPolicy), String> {
        let authenticated = self.listen_client_ca.is_some() || self.listen_auth == CodecAuth::Jwt;
        if !authenticated && !self.listen.ip().is_loopback() && !self.listen_allow_unauthenticated_plaintext {
            return Err(format!(
                "refusing to listen on {} without caller authentication: anyone who reaches it could read \
                 and write plaintext payloads. Use --listen-client-ca or --listen-auth jwt (with \
                 --listen-tls-cert), listen on loopback, or pass --listen-allow-unauthenticated-plaintext if \
                 something else guards the port",
                self.listen
            ));
        }
        let tls = match (&self.listen_tls_cert, &self.listen_tls_key) {
            (Some(cert), Some(key)) => Some(
                tls::grpc_server_config(
                    cert,
                    key,
                    self.listen_client_ca.as_deref(),
                    Some(self.tls_reload_interval),
                )
                .map_err(|error| error.to_string())?,
            ),
            _ => None,
        };
        let jwt = match self.listen_auth {
            CodecAuth::None => None,
            CodecAuth::Jwt => {
                let jwks_url = self
                    .listen_jwks_url
                    .clone()
                    .ok_or("--listen-auth jwt needs --listen-jwks-url")?;
                if self.listen_jwt_audiences.is_empty() {
                    return Err("--listen-auth jwt needs at least one --listen-jwt-audience".to_owned());
                }
                Some(Arc::new(JwtVerifier::new(JwtSettings {
                    jwks_url,
                    audiences: self.listen_jwt_audiences.clone(),
                    issuer: self.listen_jwt_issuer.clone(),
                    // Workers' tokens name a subject, not necessarily a person's email.
                    email_claim: "sub".to_owned(),
                    refetch_interval: self.listen_jwks_refresh_interval,
                    token_source: self.listen_token_from,
                })))
            }
        };
        Ok((
            tls,
            CallerPolicy {
                require_client_certificate: self.listen_client_ca.is_some(),
                jwt,
            },
        ))
    }

    /// How to reach the upstream: its address and, when on, TLS.
    pub fn upstream_settings(&self) -> Result<UpstreamSettings, String> {
        let address = self.upstream()?;
        let tls_setting_given =
            self.upstream_ca.is_some() || self.upstream_server_name.is_some() || self.upstream_tls_cert.is_some();
        let tls = match self.upstream_tls {
            Some(false) if tls_setting_given || address.starts_with("https://") => {
                return Err("--upstream-tls false contradicts the upstream TLS settings given".to_owned());
            }
            Some(explicit) => explicit,
            None => {
                tls_setting_given || address.starts_with("https://") || address.trim_end_matches('/').ends_with(":443")
            }
        };
        Ok(UpstreamSettings {
            address,
            connections: usize::from(self.upstream_connections),
            tls: tls.then(|| UpstreamTls {
                ca: self.upstream_ca.clone(),
                server_name: self.upstream_server_name.clone(),
                client_identity: self.upstream_tls_cert.clone().zip(self.upstream_tls_key.clone()),
                reload_interval: self.tls_reload_interval,
            }),
        })
    }

    /// What the proxy adds to every upstream call.
    pub fn upstream_credentials(&self) -> Result<UpstreamCredentials, String> {
        let authorization = match &self.upstream_api_key {
            Some(key) if !key.is_empty() => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| "the upstream API key has characters a header cannot carry".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        let namespace = match &self.namespace {
            Some(namespace) if !namespace.is_empty() => Some(
                HeaderValue::from_str(namespace)
                    .map_err(|_| format!("namespace {namespace:?} is not a valid header value"))?,
            ),
            _ => None,
        };
        Ok(UpstreamCredentials {
            authorization,
            namespace,
        })
    }

    /// KMS settings when a KMS key or key template is given.
    /// The provider key the flags choose for every namespace, if any.
    fn kms_selector(&self) -> Result<Option<KeySelector>, String> {
        match (&self.kms_key, &self.kms_key_template) {
            (Some(key), _) => Ok(Some(KeySelector::Fixed(key.clone()))),
            (None, Some(template)) if template.contains("{namespace}") => {
                Ok(Some(KeySelector::Template(template.clone())))
            }
            (None, Some(template)) => Err(format!(
                "--kms-key-template {template:?} has no {{namespace}} placeholder"
            )),
            (None, None) => Ok(None),
        }
    }

    /// Every namespace's keys, loaded: the configuration file's `[namespaces]` sections,
    /// and the flags' keys for every namespace no section names. A namespace left with
    /// neither is refused.
    pub fn key_configuration(&self) -> Result<KeyConfiguration, String> {
        let selector = self.kms_selector()?;
        let flag_keys = if self.keys.is_empty() {
            Keyring::empty()
        } else {
            load_keyring(&self.keys).map_err(|error| error.to_string())?
        };
        let sections = build_sections(&self.namespaces, &flag_keys).map_err(|error| error.to_string())?;
        let others = if flag_keys.active().is_none() && selector.is_none() {
            None
        } else {
            // A template gives each namespace its own key, and unwrapping names it; one
            // key for all unwraps whatever the provider holds, as the samples do.
            let binds_unwrap = matches!(selector, Some(KeySelector::Template(_)));
            Some(KeySet::new(flag_keys, selector, binds_unwrap))
        };
        if sections.is_empty() && others.is_none() {
            return Err(
                "no keys: pass --key ID=SOURCE (make one with `temporal-codec-proxy keygen`), --kms-key, \
                 --kms-key-template, or give namespaces keys in [namespaces] sections of the configuration file"
                    .to_owned(),
            );
        }
        let keys = NamespaceKeys::new(sections, others);
        let kms = if keys.uses_provider() {
            if self.kms_data_key_max_payloads == 0 || self.kms_data_key_max_payloads > MAX_PAYLOADS_PER_DATA_KEY {
                return Err(format!(
                    "--kms-data-key-max-payloads must be between 1 and {MAX_PAYLOADS_PER_DATA_KEY} (random nonces)"
                ));
            }
            Some(KmsConfig {
                client: AwsKmsSettings {
                    endpoint: self.kms_endpoint.clone(),
                    region: self.kms_region.clone(),
                },
                cache: CacheSettings {
                    limits: DataKeyLimits {
                        max_age: self.kms_data_key_max_age,
                        max_payloads: self.kms_data_key_max_payloads,
                        max_bytes: self.kms_data_key_max_bytes,
                    },
                    decrypt_cache_ttl: self.kms_decrypt_cache_ttl,
                    decrypt_cache_capacity: self.kms_decrypt_cache_capacity,
                },
            })
        } else {
            None
        };
        Ok(KeyConfiguration { keys, kms })
    }

    /// The payload schema: from --descriptors, else the Temporal API compiled in.
    pub fn payload_schema(&self) -> Result<&'static Schema, String> {
        match &self.descriptors {
            Some(path) => Schema::load(path),
            None => Ok(Schema::compiled_in()),
        }
    }

    pub fn policy(&self) -> EncryptionPolicy {
        EncryptionPolicy {
            headers: self.encrypt_headers,
            user_metadata: self.encrypt_user_metadata,
            operator_data: self.encrypt_operator_data,
            failure_messages: self.encrypt_failure_messages,
        }
    }
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
/// A message limit a gRPC frame can carry: its length prefix is 32 bits.
/// File descriptors kept back from the listeners' caps: upstream and KMS connections, the
/// descriptors file, TLS files being reloaded.
const RESERVED_FILE_DESCRIPTORS: usize = 256;
/// The gRPC listener's cap is never derived below this, however low the open-file limit.
const MIN_GRPC_CONNECTIONS: usize = 64;

/// How many connections each listener serves at once.
/// AWS KMS as the configuration names it: where KMS is, how data keys are cached.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub client: AwsKmsSettings,
    pub cache: CacheSettings,
}

/// Every namespace's keys, and the key provider they need, if any.
#[derive(Debug, Clone)]
pub struct KeyConfiguration {
    pub keys: NamespaceKeys,
    pub kms: Option<KmsConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub grpc: usize,
    pub codec: usize,
}

fn parse_message_limit(text: &str) -> Result<usize, String> {
    let limit: u64 = text.parse().map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if limit == 0 || limit > u64::from(u32::MAX) {
        return Err(format!(
            "{limit} is outside 1..={}: a gRPC frame's length is 32 bits",
            u32::MAX
        ));
    }
    usize::try_from(limit).map_err(|_| format!("{limit} bytes do not fit this platform's memory"))
}

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

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["temporal-codec-proxy", "serve", "--key", "k=base64:AAAA"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            other => unreachable!("parsed serve, got {other:?}"),
        }
    }

    #[test]
    fn upstream_tls_is_on_for_port_443_https_and_any_tls_setting() {
        let tls_on = |extra: &[&str]| serve_args(extra).upstream_settings().unwrap().tls.is_some();
        assert!(!tls_on(&["--upstream", "temporal:7233"]));
        assert!(tls_on(&["--upstream", "ns.acct.tmprl.cloud:443"]));
        assert!(tls_on(&["--upstream", "https://temporal:7233"]));
        assert!(tls_on(&[
            "--upstream",
            "temporal:7233",
            "--upstream-server-name",
            "temporal.internal"
        ]));
        assert!(tls_on(&["--upstream", "temporal:7233", "--upstream-tls", "true"]));
        assert!(!tls_on(&["--upstream", "temporal:443", "--upstream-tls", "false"]));
        let contradiction = serve_args(&[
            "--upstream",
            "t:7233",
            "--upstream-ca",
            "/ca.pem",
            "--upstream-tls",
            "false",
        ])
        .upstream_settings()
        .unwrap_err();
        assert!(contradiction.contains("contradicts"), "{contradiction}");
    }

    #[test]
    fn unauthenticated_grpc_listener_is_refused_off_loopback_unless_allowed() {
        assert!(serve_args(&[]).grpc_listener().is_ok());
        let error = serve_args(&["--listen", "0.0.0.0:7233"]).grpc_listener().err().unwrap();
        assert!(error.contains("--listen-allow-unauthenticated-plaintext"), "{error}");
        assert!(
            serve_args(&["--listen", "0.0.0.0:7233", "--listen-allow-unauthenticated-plaintext"])
                .grpc_listener()
                .is_ok()
        );
        let error = serve_args(&["--listen", "0.0.0.0:7233", "--listen-auth", "jwt"])
            .grpc_listener()
            .err()
            .unwrap();
        assert!(error.contains("--listen-jwks-url"), "{error}");
    }

    #[test]
    fn unauthenticated_codec_server_is_refused_off_loopback_unless_allowed() {
        assert!(serve_args(&[]).codec_server().is_ok());
        let error = serve_args(&["--codec-listen", "0.0.0.0:8081"])
            .codec_server()
            .err()
            .unwrap();
        assert!(error.contains("--codec-allow-unauthenticated-decryption"), "{error}");
        assert!(
            serve_args(&[
                "--codec-listen",
                "0.0.0.0:8081",
                "--codec-allow-unauthenticated-decryption"
            ])
            .codec_server()
            .is_ok()
        );
    }

    #[tokio::test]
    async fn jwt_with_cloud_roles_needs_an_api_key() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::remove_var("TEMPORAL_API_KEY") };
        let error = serve_args(&["--codec-auth", "jwt"]).codec_server().err().unwrap();
        assert!(error.contains("TEMPORAL_API_KEY"), "{error}");
        let settings = serve_args(&["--codec-auth", "jwt", "--codec-roles-from", "claims"])
            .codec_server()
            .unwrap();
        assert!(settings.authenticator.is_some());
        let settings = serve_args(&["--codec-auth", "jwt", "--cloud-api-key", "k"])
            .codec_server()
            .unwrap();
        assert!(settings.authenticator.is_some());
        let remote_jwt = serve_args(&[
            "--codec-auth",
            "jwt",
            "--codec-roles-from",
            "claims",
            "--codec-listen",
            "0.0.0.0:8081",
        ]);
        assert!(remote_jwt.codec_server().is_ok());
    }

    #[test]
    fn cors_origins_default_to_the_temporal_uis() {
        let settings = serve_args(&[]).codec_server().unwrap();
        assert_eq!(settings.cors_origins.len(), 3);
        let settings = serve_args(&["--codec-cors-origin", "https://ui.example.com/"])
            .codec_server()
            .unwrap();
        assert_eq!(
            settings.cors_origins,
            vec![HeaderValue::from_static("https://ui.example.com")]
        );
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
