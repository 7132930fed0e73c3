//! The memory budget for message bodies the proxy holds to rewrite: permits are taken before bytes are buffered and returned when they have been written out.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What `--max-buffered-bytes` defaults to: room for a few of the largest messages while
/// leaving most of a 512 MiB container to the rest of the process.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// How long a call waits for budget unless `--buffer-wait` says otherwise.
pub const DEFAULT_BUFFER_WAIT: Duration = Duration::from_secs(2);

/// What one call may hold without asking: calls with small messages never wait for the budget
/// and are never refused by it.
pub const SMALL_CALL_ALLOWANCE: usize = 64 * 1024;

/// The size of the pieces a held body is handed to HTTP/2 in: a piece is taken only when the
/// peer's flow-control window has room, so a peer that stops reading stops the body within one piece.
const HANDED_OVER_PIECE: usize = 64 * 1024;

/// How long after a call last had to wait for budget the budget still counts as exhausted:
/// readiness then stays down for a while instead of flapping with every call.
const SHORTAGE_HOLD: Duration = Duration::from_secs(5);

/// The total of bytes that calls may hold buffered at once, shared by every call of a listener.
pub struct MemoryBudget {
    limit: usize,
    wait: Duration,
    created: Instant,
    /// Milliseconds after `created` when a call last had to wait; `u64::MAX` before any did.
    last_shortage_ms: AtomicU64,
    used: AtomicUsize,
    waiting: AtomicUsize,
    released: Notify,
    waits: AtomicU64,
    refusals: AtomicU64,
}

/// The budget could not give a call what it needed within the bounded wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted {
    pub limit: usize,
    pub wanted: usize,
    pub waited: Duration,
}

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the proxy is holding its limit of {} bytes of messages for other calls (--max-buffered-bytes) \
             and could not buffer {} more bytes for this one within {:?}",
            self.limit, self.wanted, self.waited
        )
    }
}

impl std::error::Error for BudgetExhausted {}

impl MemoryBudget {
    /// A budget of `limit` bytes; a call that cannot get its share waits at most `wait`.
    pub fn new(limit: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            limit,
            wait,
            created: Instant::now(),
            last_shortage_ms: AtomicU64::new(u64::MAX),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
            waits: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        })
    }

    /// A permit that holds nothing yet.
    pub fn permit(self: &Arc<Self>) -> BudgetPermit {
        BudgetPermit {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by calls now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Calls waiting for budget now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Times a call had to wait for budget.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Calls refused because the budget stayed exhausted for the whole wait.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// True while calls wait for budget or none is left, and for a few seconds after a call
    /// last had to wait: a gateway should be routed around.
    pub fn is_exhausted(&self) -> bool {
        let last_shortage = self.last_shortage_ms.load(Ordering::Relaxed);
        let recent = last_shortage != u64::MAX
            && self.millis_since_created().saturating_sub(last_shortage) < SHORTAGE_HOLD.as_millis() as u64;
        recent || self.waiting() > 0 || self.used() >= self.limit
    }

    fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Takes `bytes` if they fit under the limit.
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.released.notify_waiters();
        }
    }
}

/// Bytes one call holds from the budget; they go back when the permit is dropped.
pub struct BudgetPermit {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl std::fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetPermit").field("bytes", &self.bytes).finish()
    }
}

impl BudgetPermit {
    /// Bytes this permit holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes before they are buffered, waiting at most the budget's wait for
    /// other calls to give some back.
    pub async fn grow(&mut self, more: usize) -> Result<(), BudgetExhausted> {
        let budget = &self.budget;
        if more == 0 {
            return Ok(());
        }
        if self.bytes + more <= SMALL_CALL_ALLOWANCE {
            budget.used.fetch_add(more, Ordering::AcqRel);
            self.bytes += more;
            return Ok(());
        }
        if budget.try_take(more) {
            self.bytes += more;
            return Ok(());
        }
        budget.waits.fetch_add(1, Ordering::Relaxed);
        budget
            .last_shortage_ms
            .store(budget.millis_since_created(), Ordering::Relaxed);
        budget.waiting.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let deadline = started + budget.wait;
        let taken = loop {
            let released = budget.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes it.
            released.as_mut().enable();
            if budget.try_take(more) {
                break true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                break budget.try_take(more);
            }
        };
        budget.waiting.fetch_sub(1, Ordering::AcqRel);
        if taken {
            self.bytes += more;
            Ok(())
        } else {
            budget.refusals.fetch_add(1, Ordering::Relaxed);
            Err(BudgetExhausted {
                limit: budget.limit,
                wanted: more,
                waited: started.elapsed(),
            })
        }
    }

    /// Grows the permit to `bytes` if it holds less, as [`BudgetPermit::grow`] does.
    pub async fn hold_at_least(&mut self, bytes: usize) -> Result<(), BudgetExhausted> {
        match bytes.checked_sub(self.bytes) {
            Some(more) if more > 0 => self.grow(more).await,
            _ => Ok(()),
        }
    }

    /// Sets the permit to `bytes` already in memory (a rewritten message), without waiting:
    /// the memory exists, and the budget counts it until it is written out.
    pub fn resize_to_held(&mut self, bytes: usize) {
        let budget = &self.budget;
        if bytes >= self.bytes {
            budget.used.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            budget.give_back(self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A buffered body that keeps its budget permit until its last byte has been handed over.
pub struct HeldBody {
    /// What is left to hand over, in order.
    pieces: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    permit: Option<BudgetPermit>,
}

impl HeldBody {
    pub fn new(pieces: Vec<Bytes>, trailers: Option<HeaderMap>, permit: BudgetPermit) -> Self {
        Self {
            pieces: pieces.into_iter().filter(|piece| !piece.is_empty()).collect(),
            trailers,
            permit: Some(permit),
        }
    }

    fn remaining(&self) -> u64 {
        self.pieces.iter().map(|piece| piece.len() as u64).sum()
    }
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.pieces.front_mut() {
            Some(piece) if piece.len() > HANDED_OVER_PIECE => Some(Frame::data(piece.split_to(HANDED_OVER_PIECE))),
            Some(_) => self.pieces.pop_front().map(Frame::data),
            None => self.trailers.take().map(Frame::trailers),
        };
        if self.is_end_stream() {
            self.permit = None;
        }
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.trailers.is_none() {
            SizeHint::with_exact(self.remaining())
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(self.remaining());
            hint
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_waits_for_bytes_another_gives_back() {
        let budget = MemoryBudget::new(1 << 20, Duration::from_secs(5));
        let mut first = budget.permit();
        first.grow(1 << 20).await.unwrap();
        assert!(budget.is_exhausted());
        let waiting = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                let mut second = budget.permit();
                second.grow(512 << 10).await.map(|()| second.bytes())
            })
        };
        while budget.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(512 << 10));
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.waits(), 1);
        assert_eq!(budget.refusals(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_cannot_get_budget_in_time_is_refused_naming_the_limit() {
        let budget = MemoryBudget::new(1 << 20, Duration::from_millis(200));
        let mut holder = budget.permit();
        holder.grow(900 << 10).await.unwrap();
        let mut refused = budget.permit();
        let error = refused.grow(200 << 10).await.unwrap_err();
        assert_eq!(error.limit, 1 << 20);
        assert!(error.waited >= Duration::from_millis(200));
        assert!(error.to_string().contains("--max-buffered-bytes"), "{error}");
        assert_eq!(refused.bytes(), 0);
        assert_eq!(budget.refusals(), 1);
        assert_eq!(budget.used(), 900 << 10);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_as_exhausted_for_a_while_after_a_call_had_to_wait() {
        let budget = MemoryBudget::new(1 << 20, Duration::from_millis(100));
        assert!(!budget.is_exhausted());
        let mut holder = budget.permit();
        holder.grow(1 << 20).await.unwrap();
        assert!(budget.permit().grow(100_000).await.is_err());
        drop(holder);
        assert!(budget.is_exhausted(), "a call was refused moments ago");
        tokio::time::advance(SHORTAGE_HOLD).await;
        assert!(!budget.is_exhausted());
    }

    #[tokio::test]
    async fn small_calls_are_never_refused() {
        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let mut holder = budget.permit();
        holder.grow(1 << 20).await.unwrap();
        let mut small = budget.permit();
        small.grow(SMALL_CALL_ALLOWANCE).await.unwrap();
        assert_eq!(budget.used(), (1 << 20) + SMALL_CALL_ALLOWANCE);
        assert!(small.grow(1).await.is_err());
        drop(small);
        drop(holder);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_held_body_gives_its_bytes_back_once_the_last_piece_is_handed_over() {
        use http_body_util::BodyExt as _;

        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let mut permit = budget.permit();
        permit.grow(200_000).await.unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let pieces = vec![Bytes::from_static(&[0; 5]), Bytes::from(vec![7; 199_995])];
        let mut body = HeldBody::new(pieces, Some(trailers), permit);
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if frame.is_trailers() {
                assert_eq!(budget.used(), 0, "the bytes are handed over before the trailers");
            } else {
                assert_eq!(budget.used(), 200_000);
                pieces.push(frame.into_data().unwrap().len());
            }
        }
        assert_eq!(pieces, [5, 65_536, 65_536, 65_536, 3_387]);
    }

    #[tokio::test]
    async fn a_rewritten_message_is_counted_at_its_own_size() {
        let budget = MemoryBudget::new(1 << 20, Duration::ZERO);
        let mut permit = budget.permit();
        permit.grow(100_000).await.unwrap();
        permit.resize_to_held(120_000);
        assert_eq!(budget.used(), 120_000);
        permit.resize_to_held(10);
        assert_eq!(budget.used(), 10);
        drop(permit);
        assert_eq!(budget.used(), 0);
    }
}
