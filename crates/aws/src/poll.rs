//! Polling with exponential backoff until a deadline: how the services wait for AWS to
//! finish what it does in the background (an RDS instance becoming available, a load
//! balancer provisioned, an ECS task stopping).

use std::time::Duration;

use tokio::time::Instant;

/// One wait: pauses that double from `first` up to `max`, until `limit` has passed.
#[derive(Debug)]
pub(crate) struct Backoff {
    deadline: Instant,
    pause: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts a wait of at most `limit`.
    pub(crate) fn new(first: Duration, max: Duration, limit: Duration) -> Self {
        Backoff {
            deadline: Instant::now() + limit,
            pause: first,
            max,
        }
    }

    /// Whether the time allowed has passed.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Sleeps the next pause (never past the deadline) and doubles it, up to the maximum.
    pub(crate) async fn wait(&mut self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.pause.min(left)).await;
        self.pause = (self.pause * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_maximum_and_stop_at_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(300),
            Duration::from_millis(1000),
        );
        let mut marks = Vec::new();
        while !b.expired() {
            b.wait().await;
            marks.push(start.elapsed().as_millis());
        }
        // 100, 200, 300, 300, then the last pause is cut to the 1000 ms deadline.
        assert_eq!(marks, [100, 300, 600, 900, 1000]);
    }
}
