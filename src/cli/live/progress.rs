//! A run's progress line on stderr (`run::Progress`: an indicatif line on
//! a terminal, a plain status line every 5 s otherwise, nothing when
//! quiet), as a live output: drawn from each snapshot, cleared once the
//! engine returns.

use super::output::LiveOutput;
use crate::engine::Live;
use crate::run::Progress;

impl LiveOutput for Progress {
    fn observe(&mut self, live: &Live<'_>) {
        self.update(live);
    }

    fn stopped(&mut self) {
        self.finish();
    }
}
