//! Single-flight batching, the pattern behind the proposer and read-index
//! sharing: while one batch is being served, calls that arrive wait in a
//! queue, and all of them go together as the next batch.
//!
//! There is no timer. A lone call is served at once, so it pays nothing for
//! batching; a busy node serves bigger batches, so the cost of one round
//! (a Raft commit, a quorum confirmation) is shared by more calls.
//! Batches are bounded in count and in weight (bytes, say): a call that
//! would overflow a batch opens the next one.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// The bounds of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many calls in one batch.
    pub max_items: usize,
    /// At most this much weight in one batch, unless a single call weighs more.
    pub max_weight: usize,
}

type Queued<T, R> = (T, oneshot::Sender<R>);

/// The queue into one batching task. Cheap to clone.
pub struct Batcher<T, R> {
    queue: mpsc::UnboundedSender<Queued<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the batching task; it ends when the last `Batcher` is dropped.
    ///
    /// `serve` gets every call of one batch, in arrival order, and returns
    /// one result per call, in the same order. `weigh` says how much a call
    /// counts against [`BatchLimits::max_weight`].
    pub fn start<S, Fut>(limits: BatchLimits, weigh: fn(&T) -> usize, mut serve: S) -> Self
    where
        S: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        debug_assert!(limits.max_items > 0);
        let (queue, mut calls) = mpsc::unbounded_channel::<Queued<T, R>>();
        tokio::spawn(async move {
            let mut carried: Option<Queued<T, R>> = None;
            loop {
                let Some(first) = (match carried.take() {
                    Some(call) => Some(call),
                    None => calls.recv().await,
                }) else {
                    return;
                };
                let mut weight = weigh(&first.0);
                let mut batch = vec![first];
                while batch.len() < limits.max_items {
                    let Ok(call) = calls.try_recv() else { break };
                    let w = weigh(&call.0);
                    if weight + w > limits.max_weight {
                        carried = Some(call);
                        break;
                    }
                    weight += w;
                    batch.push(call);
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let results = serve(items).await;
                debug_assert_eq!(results.len(), replies.len(), "one result per call");
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up (its deadline passed) is gone.
                    let _ = reply.send(result);
                }
            }
        });
        Self { queue }
    }

    /// Queues `item` and waits for its result; `None` if the batching task
    /// has stopped, or dropped the call without a result.
    pub async fn call(&self, item: T) -> Option<R> {
        let (reply, result) = oneshot::channel();
        self.queue.send((item, reply)).ok()?;
        result.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_items: 4,
        max_weight: 100,
    };

    type Rounds = Arc<Mutex<Vec<Vec<usize>>>>;

    /// A batcher that records each batch as its round starts, then waits
    /// for a permit before it answers.
    fn gated(gate: &Arc<Semaphore>, rounds: &Rounds) -> Batcher<usize, usize> {
        let (gate, rounds) = (Arc::clone(gate), Arc::clone(rounds));
        Batcher::start(
            LIMITS,
            |w| *w,
            move |items: Vec<usize>| {
                rounds.lock().unwrap().push(items.clone());
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    items.iter().map(|i| i * 10).collect()
                }
            },
        )
    }

    /// Queues `item` without awaiting its result.
    fn queue(batcher: &Batcher<usize, usize>, item: usize) -> oneshot::Receiver<usize> {
        let (reply, result) = oneshot::channel();
        batcher.queue.send((item, reply)).unwrap();
        result
    }

    /// Calls that arrive while a round is in flight go together in the
    /// next round, each with its own result, in order and within the limits.
    #[tokio::test]
    async fn waiting_calls_share_the_next_round() {
        let (gate, rounds) = (Arc::new(Semaphore::new(0)), Rounds::default());
        let batcher = gated(&gate, &rounds);
        let first = queue(&batcher, 1);
        // The single-threaded test runtime runs the batching task only when
        // this task yields: wait until its first round has started.
        while rounds.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (2..=7).map(|i| queue(&batcher, i)).collect();
        gate.add_permits(10);
        assert_eq!(first.await.unwrap(), 10);
        for (i, call) in (2..=7).zip(waiting) {
            assert_eq!(call.await.unwrap(), i * 10);
        }
        let rounds = rounds.lock().unwrap().clone();
        assert_eq!(rounds, vec![vec![1], vec![2, 3, 4, 5], vec![6, 7]]);
    }

    /// A call that would push a batch over its weight opens the next batch;
    /// a call heavier than the limit still goes, alone.
    #[tokio::test]
    async fn weight_bounds_a_batch() {
        let (gate, rounds) = (Arc::new(Semaphore::new(0)), Rounds::default());
        let batcher = gated(&gate, &rounds);
        let weights = [60usize, 30, 20, 150, 5];
        let calls: Vec<_> = weights.iter().map(|w| queue(&batcher, *w)).collect();
        gate.add_permits(10);
        for (call, w) in calls.into_iter().zip(weights) {
            assert_eq!(call.await.unwrap(), w * 10);
        }
        let rounds = rounds.lock().unwrap().clone();
        assert_eq!(rounds, vec![vec![60, 30], vec![20], vec![150], vec![5]]);
    }

    /// A lone call is served at once, and the task ends with its last handle.
    #[tokio::test]
    async fn a_lone_call_goes_at_once() {
        let batcher: Batcher<usize, usize> =
            Batcher::start(LIMITS, |_| 1, |items: Vec<usize>| async move { items });
        assert_eq!(batcher.call(7).await, Some(7));
    }
}
