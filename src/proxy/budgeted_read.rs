//! Reads a call's gRPC messages into memory within the budget: a frame's bytes are taken from the budget before they are read, and inflation stops at the message limit.

use bytes::{Buf as _, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::grpc_frame::{FrameError, Inflater, MessageEncoding, PREFIX_LEN, ends_inside_a_frame, read_prefix};
use crate::memory_budget::{BudgetExhausted, BudgetPermit};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much is inflated between two looks at the budget.
const INFLATE_STEP: usize = 64 * 1024;

/// The messages of one body, decompressed, and its trailers.
#[derive(Debug)]
pub struct ReadMessages {
    pub messages: Vec<Vec<u8>>,
    pub trailers: Option<HeaderMap>,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    Frame(FrameError),
    Budget(BudgetExhausted),
    /// The body itself failed (the peer reset the stream, say).
    Body(BoxError),
    /// The body did not finish arriving by the deadline.
    TimedOut,
}

impl From<BudgetExhausted> for ReadError {
    fn from(error: BudgetExhausted) -> Self {
        Self::Budget(error)
    }
}

impl From<FrameError> for ReadError {
    fn from(error: FrameError) -> Self {
        Self::Frame(error)
    }
}

/// Reads every message of `body`, each at most `limit` bytes once decompressed, holding what
/// it buffers in `permit`. Bytes of a frame whose budget is not yet granted stay with the
/// peer, under HTTP/2 flow control, until it is. When `deadline` is given, the body must
/// have arrived by then.
pub async fn read_messages<B>(
    mut body: B,
    encoding: MessageEncoding,
    limit: usize,
    permit: &mut BudgetPermit,
    deadline: Option<Instant>,
) -> Result<ReadMessages, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut pending = BytesMut::new();
    let mut messages = Vec::with_capacity(1);
    let mut decoded_bytes = 0;
    let mut trailers = None;
    loop {
        while let Some(prefix) = read_prefix(&pending, encoding, limit)? {
            permit.hold_at_least(decoded_bytes + prefix.frame_len()).await?;
            if pending.len() < prefix.frame_len() {
                pending.reserve(prefix.frame_len() - pending.len());
                break;
            }
            let message = if prefix.compressed {
                let frame = pending.split_to(prefix.frame_len());
                inflate(&frame[PREFIX_LEN..], limit, permit, decoded_bytes + frame.len()).await?
            } else if pending.len() == prefix.frame_len() {
                // The whole buffer is this one message (a unary call's): it becomes the
                // message in place, with no second copy of it.
                let mut frame = std::mem::take(&mut pending);
                frame.advance(PREFIX_LEN);
                Vec::from(frame)
            } else {
                pending.split_to(prefix.frame_len())[PREFIX_LEN..].to_vec()
            };
            decoded_bytes += message.len();
            messages.push(message);
        }
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| ReadError::TimedOut)?,
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
        match frame.map_err(|error| ReadError::Body(error.into()))?.into_data() {
            Ok(data) => {
                permit.hold_at_least(decoded_bytes + pending.len() + data.len()).await?;
                pending.extend_from_slice(&data);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    if !pending.is_empty() {
        return Err(ends_inside_a_frame(pending.len()).into());
    }
    permit.resize_to_held(decoded_bytes);
    Ok(ReadMessages { messages, trailers })
}

/// Inflates `compressed`, taking budget for each step's output before it is written;
/// `held` is what the call already holds besides the output.
async fn inflate(
    compressed: &[u8],
    limit: usize,
    permit: &mut BudgetPermit,
    held: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut inflater = Inflater::new(compressed, limit);
    let mut out = Vec::new();
    loop {
        if out.capacity() - out.len() < INFLATE_STEP {
            let capacity = (out.capacity() * 2).max(out.len() + INFLATE_STEP).min(limit + 1);
            permit.hold_at_least(held + capacity).await?;
            out.reserve_exact(capacity.saturating_sub(out.len()));
        }
        if inflater.step(&mut out, INFLATE_STEP)? {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;
    use crate::memory_budget::MemoryBudget;
    use crate::proxy::grpc_frame::{encode_frame, encode_frame_gzip};

    fn body_of(chunks: Vec<Bytes>) -> impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        StreamBody::new(futures_util::stream::iter(
            chunks.into_iter().map(|chunk| Ok(Frame::data(chunk))),
        ))
    }

    #[tokio::test]
    async fn messages_split_across_chunks_are_read_and_held_at_their_size() {
        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let body = [encode_frame(&[1; 100_000]), encode_frame_gzip(&[2; 200_000])].concat();
        let chunks = body.chunks(16_384).map(Bytes::copy_from_slice).collect();
        let mut permit = budget.permit();
        let read = read_messages(body_of(chunks), MessageEncoding::Gzip, 1 << 20, &mut permit, None)
            .await
            .unwrap();
        assert_eq!(read.messages, vec![vec![1; 100_000], vec![2; 200_000]]);
        assert_eq!(permit.bytes(), 300_000);
        assert_eq!(budget.used(), 300_000);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_allows_is_refused_before_its_bytes_are_read() {
        let budget = MemoryBudget::new(256 << 10, Duration::ZERO);
        let frame = encode_frame(&vec![0; 1 << 20]);
        let mut permit = budget.permit();
        let error = read_messages(
            body_of(vec![frame.slice(..5)]),
            MessageEncoding::Identity,
            4 << 20,
            &mut permit,
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ReadError::Budget(_)), "{error:?}");
        assert_eq!(permit.bytes(), 5, "only the prefix was read");
        drop(permit);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_gzip_bomb_stops_at_the_limit_and_holds_no_more_than_it() {
        let budget = MemoryBudget::new(64 << 20, Duration::ZERO);
        let bomb = encode_frame_gzip(&vec![0; 32 << 20]);
        let mut permit = budget.permit();
        let error = read_messages(
            body_of(vec![bomb.clone()]),
            MessageEncoding::Gzip,
            1 << 20,
            &mut permit,
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ReadError::Frame(FrameError::TooLarge { limit }) if limit == 1 << 20),
            "{error:?}"
        );
        // The compressed frame, and the output up to one byte past the limit.
        assert!(permit.bytes() <= bomb.len() + (1 << 20) + 1, "held {}", permit.bytes());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out() {
        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let frame = encode_frame(&[0; 1000]);
        let stalled = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(frame.slice(..10)))])
            .chain(futures_util::stream::pending());
        let mut permit = budget.permit();
        let deadline = Instant::now() + Duration::from_secs(1);
        let error = read_messages(
            StreamBody::new(stalled),
            MessageEncoding::Identity,
            1 << 20,
            &mut permit,
            Some(deadline),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ReadError::TimedOut), "{error:?}");
    }

    #[tokio::test]
    async fn a_body_that_ends_inside_a_frame_is_malformed() {
        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let frame = encode_frame(&[0; 1000]);
        let mut permit = budget.permit();
        let error = read_messages(
            body_of(vec![frame.slice(..500)]),
            MessageEncoding::Identity,
            1 << 20,
            &mut permit,
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ReadError::Frame(FrameError::Malformed(_))), "{error:?}");
    }
}
