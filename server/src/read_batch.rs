//! `ReadBatch`: shares one ReadIndex round among the linearizable reads
//! waiting for it, as etcd batches its read requests.
//!
//! A read may use the outcome of a round only if the round started after
//! the read arrived (else the leader may have confirmed its leadership
//! before the write the read must see). So a read joins the queue for the
//! *next* round; one task runs rounds back to back while reads wait, each
//! round answering every read queued before it started. Under load a
//! round costs one quorum check for many reads instead of one each.

use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Rounds of `T` shared by the callers queued before each starts.
#[derive(Debug)]
pub(crate) struct ReadBatch<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    /// A task is running rounds.
    running: bool,
    /// Callers for the next round.
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T> Default for ReadBatch<T> {
    fn default() -> Self {
        ReadBatch {
            state: Mutex::new(State {
                running: false,
                waiting: Vec::new(),
            }),
        }
    }
}

/// Ends the round task's ownership: on exit (normal or a panic in a round)
/// the next caller starts a new task, and callers still queued are
/// released (their `join` returns `None`).
struct RunningGuard<'a, T>(&'a ReadBatch<T>);

impl<T> Drop for RunningGuard<'_, T> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.running = false;
        st.waiting.clear();
    }
}

impl<T: Clone + Send + 'static> ReadBatch<T> {
    /// The outcome of the next round that starts after this call; `round`
    /// runs a round (it is used only if this call starts the round task).
    /// `None` if the round task ended without an answer.
    pub(crate) async fn join<F, Fut>(self: &Arc<Self>, round: F) -> Option<T>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            let batch = self.clone();
            tokio::spawn(async move {
                loop {
                    let callers = {
                        let mut st = batch.state.lock();
                        if st.waiting.is_empty() {
                            st.running = false;
                            return;
                        }
                        std::mem::take(&mut st.waiting)
                    };
                    let guard = RunningGuard(&batch);
                    let out = round().await;
                    std::mem::forget(guard);
                    for tx in callers {
                        let _ = tx.send(out.clone());
                    }
                }
            });
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Callers that join while a round runs all get the next round's
    /// answer (never the running one's): one blocked round, 49 callers
    /// queued behind it, exactly two rounds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_queued_during_a_round_share_the_next_one() {
        let batch: Arc<ReadBatch<usize>> = Arc::default();
        let rounds = Arc::new(AtomicUsize::new(0));
        // Round n waits for a permit; the test hands them out.
        let gate = Arc::new(Semaphore::new(0));
        let round = {
            let (rounds, gate) = (rounds.clone(), gate.clone());
            move || {
                let (rounds, gate) = (rounds.clone(), gate.clone());
                async move {
                    let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.acquire().await.expect("open").forget();
                    n
                }
            }
        };
        let first = {
            let (batch, round) = (batch.clone(), round.clone());
            tokio::spawn(async move { batch.join(round).await })
        };
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let mut rest = Vec::new();
        for _ in 0..49 {
            let (batch, round) = (batch.clone(), round.clone());
            rest.push(tokio::spawn(async move { batch.join(round).await }));
        }
        while batch.state.lock().waiting.len() < 49 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some(1));
        for t in rest {
            assert_eq!(t.await.unwrap(), Some(2));
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }
}
