//! The worker's wake-up clock.

use std::pin::Pin;

use tokio::time::Instant;

/// The worker's wake-up for its next due heartbeats: a timerfd
/// (microsecond precision) when asked for and available, tokio's timer
/// otherwise. It is re-armed only when the instant changes: arming a
/// timerfd is a system call, and the loop asks again after every
/// completion.
pub(super) struct Alarm {
    precise: Option<tokio_timerfd::Delay>,
    coarse: Pin<Box<tokio::time::Sleep>>,
    /// The instant the alarm is set for and has not rung at yet.
    armed: Option<Instant>,
}

impl Alarm {
    pub(super) fn new(precise: bool) -> Alarm {
        let now = Instant::now();
        Alarm {
            precise: if precise { tokio_timerfd::Delay::new(now.into_std()).ok() } else { None },
            coarse: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
        }
    }

    /// Rings at `at`. Dropped before then, it stays set for `at`.
    pub(super) async fn ring_at(&mut self, at: Instant) {
        if self.armed != Some(at) {
            match &mut self.precise {
                Some(delay) => delay.reset(at.into_std()),
                None => self.coarse.as_mut().reset(at),
            }
            self.armed = Some(at);
        }
        match &mut self.precise {
            Some(delay) => {
                if delay.await.is_err() {
                    // The timerfd failed: tokio's timer from now on.
                    self.precise = None;
                    self.coarse.as_mut().reset(at);
                    self.coarse.as_mut().await;
                }
            }
            None => self.coarse.as_mut().await,
        }
        self.armed = None;
    }
}
