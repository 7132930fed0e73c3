//! Follows a call's response body to its end, then records the call's status and timings.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tonic::Code;
use tonic::body::Body;

use super::headers::GRPC_STATUS;
use crate::telemetry::Metrics;

/// What is known about a call before its response body has been sent.
pub struct CallRecord {
    pub metrics: Arc<Metrics>,
    pub method: &'static str,
    pub started: Instant,
    /// Time the proxy spent on its own work (reading, encrypting, decrypting).
    pub added: Duration,
}

impl CallRecord {
    fn finish(self, code: Code) {
        let total = self.started.elapsed();
        let upstream = total.saturating_sub(self.added);
        self.metrics.record_call(self.method, code, upstream, self.added);
        tracing::debug!(
            method = self.method,
            code = crate::telemetry::code_name(code),
            total_ms = total.as_secs_f64() * 1000.0,
            added_us = self.added.as_micros() as u64,
            "call finished"
        );
    }
}

/// A response body that records its call when the trailers pass, the body ends, or the
/// client goes away mid-response (recorded as `CANCELLED`).
pub struct RecordedBody {
    inner: Body,
    record: Option<CallRecord>,
    /// The status of a trailers-only response, whose body carries nothing.
    header_code: Option<Code>,
}

impl RecordedBody {
    pub fn new(inner: Body, headers: &HeaderMap, record: CallRecord) -> Self {
        Self {
            inner,
            record: Some(record),
            header_code: grpc_status(headers),
        }
    }

    fn finish(&mut self, code: Code) {
        if let Some(record) = self.record.take() {
            record.finish(code);
        }
    }
}

impl http_body::Body for RecordedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.finish(code);
            }
            Poll::Ready(None) => {
                // A gRPC response without a status is broken; trailers-only ones have it up front.
                let code = self.header_code.unwrap_or(Code::Unknown);
                self.finish(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RecordedBody {
    fn drop(&mut self) {
        // A trailers-only response may never be polled: its status is already final.
        let code = self.header_code.unwrap_or(Code::Cancelled);
        self.finish(code);
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get(GRPC_STATUS)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(Code::from_i32)
}
