//! Signals: SIGINT (Ctrl-C) and SIGTERM, as the commands take them.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::error::EXIT_ABANDONED;

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the moment this is made:
/// installing the handlers eagerly means a signal that arrives early is
/// never met by the default action (death without a report).
pub(super) struct Termination {
    pub(super) interrupt: Option<Signal>,
    pub(super) terminate: Option<Signal>,
}

impl Termination {
    /// Must be called inside the runtime.
    pub(super) fn install() -> Self {
        Termination { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
    }

    /// Completes on the next SIGINT or SIGTERM.
    pub(super) async fn recv(&mut self) {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
        }
    }
}

/// Ctrl-C and SIGTERM, as `run` and `capacity` take them. The first stops
/// cleanly (`cancel`: heartbeats in flight finish, the report is
/// complete). The second gives up on them (`abandon`): the report of what
/// was merged so far is written, marked interrupted, and the command exits
/// 130. A third, or 5 s without the report written, exits at once.
pub(super) async fn interrupts(mut termination: Termination, cancel: CancellationToken, abandon: CancellationToken) {
    termination.recv().await;
    eprintln!("\nstopping: finishing heartbeats in flight (press Ctrl-C again to stop at once)");
    cancel.cancel();
    termination.recv().await;
    eprintln!("stopping at once: writing what was merged so far (press Ctrl-C again to exit without it)");
    abandon.cancel();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(5));
        eprintln!("exiting at once: the report was not written within 5 s");
        std::process::exit(i32::from(EXIT_ABANDONED));
    });
    termination.recv().await;
    eprintln!("exiting at once");
    std::process::exit(i32::from(EXIT_ABANDONED));
}
