//! temporal-codec-proxy: a gRPC proxy that encrypts every Temporal payload on its way to
//! the server and decrypts it on its way back.

pub mod admin;
pub mod auth;
pub mod codec;
pub mod codec_server;
pub mod config;
pub mod config_file;
pub mod error;
pub mod json_nesting;
pub mod keys;
pub mod memory_budget;
pub mod open_files;
pub mod payload;
pub mod proxy;
pub mod reloading;
pub mod running_server;
pub mod telemetry;
