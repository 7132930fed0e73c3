//! Which request and response headers cross the proxy, and the gRPC deadline they carry.

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName};

use super::grpc_frame::{GRPC_ACCEPT_ENCODING, GRPC_ENCODING};

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes headers that describe one connection rather than the call.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
        HOST,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
}

/// Removes the headers that describe a body the proxy re-encodes.
pub fn remove_body_encoding(headers: &mut HeaderMap) {
    headers.remove(CONTENT_LENGTH);
    headers.remove(GRPC_ENCODING);
    headers.remove(GRPC_ACCEPT_ENCODING);
}

/// Whether `content-type` says the messages are protobuf: `application/grpc` or
/// `application/grpc+proto`, with or without parameters. Another subtype (`+json`, say)
/// frames messages the walker cannot read.
pub fn carries_protobuf(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/grpc") || media_type.eq_ignore_ascii_case("application/grpc+proto")
}

/// The call's deadline from `grpc-timeout` (`<digits><unit>`, unit one of H M S m u n).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protobuf_grpc_content_types_are_walked() {
        let mut headers = HeaderMap::new();
        assert!(!carries_protobuf(&headers));
        for (value, protobuf) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=utf-8", true),
            ("application/grpc+json", false),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(carries_protobuf(&headers), protobuf, "{value}");
        }
    }

    #[test]
    fn parses_grpc_timeouts() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("70S", Some(Duration::from_secs(70))),
            ("9999m", Some(Duration::from_millis(9999))),
            ("1H", Some(Duration::from_secs(3600))),
            ("5u", Some(Duration::from_micros(5))),
            ("S", None),
            ("123456789S", None),
            ("10x", None),
        ] {
            headers.insert(GRPC_TIMEOUT, value.parse().unwrap());
            assert_eq!(grpc_timeout(&headers), expected, "{value}");
        }
    }
}
