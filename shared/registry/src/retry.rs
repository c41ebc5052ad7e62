//! Retries of transient faults: bounded attempts, exponential backoff with jitter, a deadline.

use std::time::{Duration, Instant};

use shared::error::{Error, Result};
use shared::exit;

/// How often and how long a request (or a push) is tried again after a transient fault:
/// exponential backoff with jitter, a bounded number of attempts and an optional deadline.
#[derive(Clone, Debug)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before the second attempt; each later delay doubles, up to `max_delay`.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// No attempt starts after this instant.
    pub deadline: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            deadline: None,
        }
    }
}

/// Whether an error is a transient fault worth another attempt: a service that did not answer,
/// answered 5xx or 429, dropped the connection, or was too slow. Denials are not.
#[must_use]
pub fn is_transient(err: &Error) -> bool {
    err.code() == exit::UNAVAILABLE || err.code() == exit::TIMEOUT
}

impl Retry {
    /// `attempts` in all, none starting after `deadline`; the default backoff.
    #[must_use]
    pub fn within(attempts: u32, deadline: Instant) -> Self {
        Self {
            attempts,
            deadline: Some(deadline),
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): `base * 2^(attempt-1)`,
    /// capped at `max_delay`, then scaled by a jitter in [0.5, 1.0] taken from `jitter`.
    #[must_use]
    pub fn delay(&self, attempt: u32, jitter: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        // jitter / u64::MAX in [0, 1], halved and shifted to [0.5, 1.0].
        #[allow(clippy::cast_precision_loss)]
        let fraction = 0.5 + (jitter as f64 / u64::MAX as f64) / 2.0;
        full.mul_f64(fraction)
    }

    /// Runs `step` (given the attempt number, from 1) until it succeeds, fails for good, runs out
    /// of attempts or would start past the deadline. Each retry is announced on stderr with
    /// `what`. The final error says how many attempts were made.
    pub async fn run<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let attempts = self.attempts.max(1);
        let mut attempt = 1;
        loop {
            let err = match step(attempt).await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !is_transient(&err) {
                return Err(err);
            }
            let delay = self.delay(attempt, jitter());
            let past_deadline = self
                .deadline
                .is_some_and(|deadline| Instant::now() + delay >= deadline);
            if attempt >= attempts || past_deadline {
                if attempt == 1 {
                    return Err(err);
                }
                let why = if past_deadline {
                    "the deadline came"
                } else {
                    "no attempts left"
                };
                let mut last = Error::new(
                    err.code(),
                    format!(
                        "{what} failed after {attempt} attempts ({why}): {}",
                        err.message()
                    ),
                );
                if let Some(hint) = err.hint() {
                    last = last.with_hint(hint);
                }
                return Err(last);
            }
            shared::warn!(
                "{what}: {}; retrying in {:.1} s (attempt {} of {attempts})",
                shared::cli::one_line(err.message()),
                delay.as_secs_f64(),
                attempt + 1
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// A random number for jitter, from the standard library's per-process random hash keys.
pub(crate) fn jitter() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}
