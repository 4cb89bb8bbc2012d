//! How long a call may take and how hard it retries.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The bounds of every [`TaskClient`](crate::TaskClient) call.
///
/// A call ends at the first of: an answer that is not retryable, `max_retries`
/// retries, or `timeout` after it started (the deadline covers every attempt and
/// every backoff pause, and is sent to the server as `grpc-timeout`).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The deadline of one call, retries included. Longer rides out a leader
    /// election (1.5–3 s) more often; shorter fails faster when the cluster is down.
    pub timeout: Duration,
    /// How many times a call is retried after UNAVAILABLE or a transport error.
    pub max_retries: usize,
    /// The first backoff pause; each next pause doubles up to `max_backoff`, and
    /// each gets a random jitter of up to +100% so that clients do not retry in step.
    pub min_backoff: Duration,
    /// The longest backoff pause.
    pub max_backoff: Duration,
    /// How long opening a TCP connection to one endpoint may take before the
    /// client moves on to the next one.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_retries: 10,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl ClientOptions {
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn max_retries(mut self, max_retries: usize) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// The pauses between attempts: exponential, jittered, at most `max_retries`.
    pub(crate) fn backoff_delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff.max(self.min_backoff))
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_in_count_and_length() {
        let options = ClientOptions::default()
            .max_retries(6)
            .backoff(Duration::from_millis(10), Duration::from_millis(100));
        let delays: Vec<_> = options.backoff_delays().collect();
        assert_eq!(delays.len(), 6);
        // Jitter adds at most one more delay's worth on top of the cap.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(200)),
            "{delays:?}"
        );
    }
}
