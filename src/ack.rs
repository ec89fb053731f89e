//! Acknowledgements that travel with batches, for senders that wait for them (the agent
//! protocol, [`crate::agent_protocol`]).
//!
//! A connection that wants to know when its data is durable makes one [`AckToken`] per batch
//! it received (the sender's sequence number) and attaches it to the pipeline [`Batch`] that
//! holds that batch's records: the whole sender batch goes into one shard batch, because a
//! shard puts everything of one receive into the batch it is filling and cuts only between
//! receives. The sink thread takes the tokens off the batch it writes and releases each once
//! the batch is durable (written to the store; delivered to Kafka or appended to its WAL).
//!
//! [`Acknowledgements`] turns released tokens back into what the sender needs: the highest
//! `seq` such that *every* batch of the connection up to it is durable. Shard batches can be
//! made durable out of order (Kafka deliveries to different partitions), so it keeps the
//! connection's outstanding sequence numbers in arrival order and only moves past a prefix of
//! released ones.
//!
//! A token dropped without being released (its batch was lost at shutdown, or dropped by the
//! WAL's `drop_newest`) marks the connection *broken*: the connection then closes, and the
//! sender resends everything not acknowledged on its next connection. So a sender that waits
//! for acknowledgements never has an acknowledged batch missing, only (after a break)
//! duplicates of batches that were durable but not yet acknowledged.
//!
//! [`Batch`]: crate::pipeline::batch::Batch

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// What one connection is owed. Shared by the connection's task (which waits on
/// [`Acknowledgements::changed`]) and the sink thread (which releases tokens).
#[derive(Debug, Default)]
pub struct Acknowledgements {
    state: Mutex<AckState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct AckState {
    /// Sequence numbers received and not yet acknowledged, in arrival order, with whether they
    /// are durable.
    outstanding: VecDeque<(u64, bool)>,
    /// The highest sequence number whose batch and all earlier ones are durable; 0: none.
    acknowledged: u64,
    /// A batch of this connection was lost: it must be closed so that its sender resends.
    broken: bool,
}

/// Where a connection stands: see [`Acknowledgements::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckStatus {
    pub acknowledged: u64,
    pub outstanding: usize,
    pub broken: bool,
}

impl Acknowledgements {
    pub fn new() -> Arc<Acknowledgements> {
        Arc::new(Acknowledgements::default())
    }

    fn lock(&self) -> MutexGuard<'_, AckState> {
        // The state stays consistent at every unlock, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token for the batch `seq`, received now. Sequence numbers must increase.
    pub fn token(self: &Arc<Self>, seq: u64) -> AckToken {
        self.lock().outstanding.push_back((seq, false));
        AckToken {
            owner: Arc::clone(self),
            seq,
            released: false,
        }
    }

    /// The current acknowledgement, what is still owed, and whether a batch was lost.
    pub fn status(&self) -> AckStatus {
        let state = self.lock();
        AckStatus {
            acknowledged: state.acknowledged,
            outstanding: state.outstanding.len(),
            broken: state.broken,
        }
    }

    /// Resolves at the next release or loss after the last [`Acknowledgements::status`] (a
    /// change that happened before the wait started is not missed: `Notify` keeps a permit).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn settle(&self, seq: u64, durable: bool) {
        let mut state = self.lock();
        if durable {
            if let Some(slot) = state.outstanding.iter_mut().find(|(s, _)| *s == seq) {
                slot.1 = true;
            }
            while let Some(&(seq, true)) = state.outstanding.front() {
                state.acknowledged = seq;
                state.outstanding.pop_front();
            }
        } else {
            state.broken = true;
        }
        drop(state);
        self.changed.notify_one();
    }
}

/// The promise to acknowledge one sender batch. See the [module docs](self).
#[derive(Debug)]
pub struct AckToken {
    owner: Arc<Acknowledgements>,
    seq: u64,
    released: bool,
}

impl AckToken {
    /// The batch this token stands for is durable.
    pub fn release(mut self) {
        self.released = true;
        self.owner.settle(self.seq, true);
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if !self.released {
            self.owner.settle(self.seq, false);
        }
    }
}

/// Releases every token of `tokens`: their batch is durable.
pub fn release_all(tokens: impl IntoIterator<Item = AckToken>) {
    tokens.into_iter().for_each(AckToken::release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledges_only_a_prefix_of_durable_batches() {
        let acks = Acknowledgements::new();
        let (one, two, three) = (acks.token(1), acks.token(2), acks.token(5));
        three.release();
        assert_eq!(acks.status().acknowledged, 0, "1 and 2 are not durable yet");
        one.release();
        assert_eq!(acks.status().acknowledged, 1);
        two.release();
        let status = acks.status();
        assert_eq!((status.acknowledged, status.outstanding), (5, 0));
        assert!(!status.broken);
    }

    #[test]
    fn a_token_dropped_unreleased_breaks_the_connection_and_acknowledges_nothing_after_it() {
        let acks = Acknowledgements::new();
        let (one, two) = (acks.token(1), acks.token(2));
        drop(one);
        two.release();
        let status = acks.status();
        assert!(status.broken);
        assert_eq!(status.acknowledged, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_release_from_another_thread_wakes_the_waiter() {
        let acks = Acknowledgements::new();
        let token = acks.token(7);
        let thread = std::thread::spawn(move || token.release());
        acks.changed().await;
        thread.join().unwrap();
        assert_eq!(acks.status().acknowledged, 7);
    }
}
