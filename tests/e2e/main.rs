//! End-to-end tests: real SDK workers and clients, a real Temporal dev server, the proxy between.

mod faults;
mod relay;
mod sdk;
mod support;
