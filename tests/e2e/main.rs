//! End-to-end tests: real SDK workers and clients, a real Temporal dev server, the proxy between.

mod attacks;
mod codec_auth;
mod codec_server;
mod echo_upstream;
mod fail_closed;
mod faults;
mod forwarding;
mod gateway;
mod identity;
mod kms;
mod nginx_config;
mod operations;
mod overload;
mod relay;
mod sdk;
mod support;
mod tenancy;
mod token_attacks;
mod upstream_tls;
mod web_ui;
