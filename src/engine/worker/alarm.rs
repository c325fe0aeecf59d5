//! The worker's wake-up clock.

use std::pin::Pin;

use timerfd::{ClockId, SetTimeFlags, TimerFd, TimerState};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The worker's wake-up for its next due heartbeats: a timerfd
/// (microsecond precision) when asked for and available, tokio's timer
/// otherwise. It is re-armed only when the instant changes: arming a
/// timerfd is a system call, and the loop asks again after every
/// completion.
///
/// The timerfd is read through tokio's readiness, marked not ready as
/// soon as its expiry is read: a timer just armed is known not to have
/// rung, so no read is tried (and fails) before epoll says it has. A
/// read that fails costs a system call per wake-up, about one in five of
/// an MQTT run's (tokio-timerfd's `Delay` made it; measured with
/// `strace -c`).
pub(super) struct Alarm {
    precise: Option<AsyncFd<TimerFd>>,
    coarse: Pin<Box<tokio::time::Sleep>>,
    /// The instant the alarm is set for and has not rung at yet.
    armed: Option<Instant>,
}

impl Alarm {
    pub(super) fn new(precise: bool) -> Alarm {
        let precise = precise
            .then(|| {
                let fd = TimerFd::new_custom(ClockId::Monotonic, true, true).ok()?;
                // SAFETY: the TimerFd owns its file descriptor, open and the
                // same until the TimerFd is dropped with the AsyncFd.
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
            })
            .flatten();
        Alarm { precise, coarse: Box::pin(tokio::time::sleep_until(Instant::now())), armed: None }
    }

    /// Rings at `at`. Dropped before then, it stays set for `at`.
    pub(super) async fn ring_at(&mut self, at: Instant) {
        if self.armed != Some(at) {
            match &mut self.precise {
                Some(fd) => {
                    let now = Instant::now();
                    if at <= now {
                        self.armed = None;
                        return;
                    }
                    fd.get_mut().set_state(TimerState::Oneshot(at - now), SetTimeFlags::Default);
                }
                None => self.coarse.as_mut().reset(at),
            }
            self.armed = Some(at);
        }
        match &mut self.precise {
            Some(fd) => loop {
                let Ok(mut ready) = fd.readable_mut().await else {
                    // The timerfd failed: tokio's timer from now on.
                    self.precise = None;
                    self.coarse.as_mut().reset(at);
                    self.coarse.as_mut().await;
                    break;
                };
                // 0: not rung yet (a readiness left from before it was armed).
                let rung = ready.get_inner().read() > 0;
                ready.clear_ready();
                if rung {
                    break;
                }
            },
            None => self.coarse.as_mut().await,
        }
        self.armed = None;
    }
}
