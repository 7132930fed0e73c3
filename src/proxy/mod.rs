//! The gRPC side: listener, forwarding with payload rewriting, and the upstream connections.

pub mod budgeted_read;
pub mod call_record;
pub mod coalescing_io;
pub mod forward;
pub mod grpc_frame;
pub mod headers;
pub mod listener;
pub mod method_policy;
pub mod upstream;

pub use forward::{Caller, CallerPolicy, Forwarder};
pub use listener::start;
