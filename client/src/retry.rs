//! Retry decisions and backoff pauses (see [`crate::RetryOptions`]).

use crate::error::{is_transport_failure, is_unavailable, Error, NO_LEADER, REQUEST_TIMED_OUT};
use crate::options::RetryOptions;
use rand::Rng;
use std::time::Duration;

/// Whether a call changes the store (decides which failures are retried
/// and whether it goes to the leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Reads: any member serves them.
    Read,
    /// Mutations: sent to the leader when it is known.
    Write,
}

/// Whether a call of `kind` that failed with `err` should be tried again.
pub(crate) fn should_retry(kind: Kind, err: &Error, opts: &RetryOptions) -> bool {
    match err {
        Error::Status(s) => {
            if s.message() == NO_LEADER {
                return true;
            }
            match kind {
                Kind::Read => is_unavailable(s) || is_transport_failure(s),
                Kind::Write => {
                    opts.retry_mutations
                        && s.message() != REQUEST_TIMED_OUT
                        && (is_unavailable(s) || is_transport_failure(s))
                }
            }
        }
        Error::Timeout(_) => kind == Kind::Read,
        _ => false,
    }
}

/// Whether a failure suggests the member used is down or no longer leads,
/// so that the leader should be looked up again.
pub(crate) fn suggests_rediscovery(err: &Error) -> bool {
    err.is_retryable()
}

/// Capped exponential pauses with jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses per `opts`, the first one `opts.initial_backoff`.
    pub(crate) fn new(opts: &RetryOptions) -> Backoff {
        Backoff {
            next: opts.initial_backoff,
            max: opts.max_backoff.max(opts.initial_backoff),
        }
    }

    /// Pauses between `initial` and `max`, for loops that have no
    /// [`RetryOptions`] of their own (streams being re-established).
    pub(crate) fn with(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            next: initial,
            max: max.max(initial),
        }
    }

    /// The next pause: the current step jittered to 50–100 %; the step
    /// doubles up to the cap.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let factor: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        step.mul_f64(factor)
    }

    /// Starts over from the first pause (after a success).
    pub(crate) fn reset(&mut self, opts_initial: Duration) {
        self.next = opts_initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter() {
        let opts = RetryOptions::default();
        let mut b = Backoff::new(&opts);
        let mut step = opts.initial_backoff;
        for _ in 0..10 {
            let p = b.next_pause();
            assert!(
                p >= step / 2 && p <= step,
                "{p:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(opts.max_backoff);
        }
        b.reset(opts.initial_backoff);
        assert!(b.next_pause() <= opts.initial_backoff);
    }

    #[test]
    fn mutations_are_not_retried_after_a_server_timeout() {
        let opts = RetryOptions::default();
        let timed_out = Error::Status(tonic::Status::unavailable(REQUEST_TIMED_OUT));
        assert!(should_retry(Kind::Read, &timed_out, &opts));
        assert!(!should_retry(Kind::Write, &timed_out, &opts));
        let no_leader = Error::Status(tonic::Status::unavailable(NO_LEADER));
        let strict = RetryOptions {
            retry_mutations: false,
            ..RetryOptions::default()
        };
        assert!(should_retry(Kind::Write, &no_leader, &strict));
        let down = Error::Status(tonic::Status::unavailable("tcp connect error"));
        assert!(should_retry(Kind::Write, &down, &opts));
        assert!(!should_retry(Kind::Write, &down, &strict));
        let bad = Error::Status(tonic::Status::invalid_argument(
            "etcdserver: key is not provided",
        ));
        assert!(!should_retry(Kind::Read, &bad, &opts));
        assert!(!should_retry(
            Kind::Write,
            &Error::Timeout(Duration::from_secs(1)),
            &opts
        ));
    }
}
