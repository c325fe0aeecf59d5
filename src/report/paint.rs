//! Colour for the lines people look for first in a summary: each
//! threshold's pass or FAIL, the thresholds' tally, the generator's
//! verdict, a failed or aborted run. Colour only where a person reads it:
//! on a terminal, and never when `NO_COLOR` is set (<https://no-color.org>);
//! anything else (a pipe, a file, a CI log) gets the plain text, byte for
//! byte what [`Report::summary`](super::Report::summary) gives.

use std::borrow::Cow;
use std::ffi::OsStr;

/// Whether, and how, to colour text for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    colour: bool,
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

impl Paint {
    /// No colour: the text as it is.
    pub const PLAIN: Paint = Paint { colour: false };

    /// Colour for a stream that `is_terminal`, unless `no_color` (the
    /// value of `NO_COLOR`) is set to anything but the empty string.
    pub fn for_stream(is_terminal: bool, no_color: Option<&OsStr>) -> Paint {
        Paint { colour: is_terminal && no_color.is_none_or(|v| v.is_empty()) }
    }

    /// [`Paint::for_stream`] for standard output or standard error, with
    /// this process's `NO_COLOR`.
    pub fn for_stdout() -> Paint {
        use std::io::IsTerminal;
        Paint::for_stream(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
    }

    /// See [`Paint::for_stdout`].
    pub fn for_stderr() -> Paint {
        use std::io::IsTerminal;
        Paint::for_stream(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
    }

    pub fn is_colour(self) -> bool {
        self.colour
    }

    /// What went as it should (a threshold passed, the generator kept up).
    pub fn good(self, text: &str) -> Cow<'_, str> {
        self.wrap(GREEN, text)
    }

    /// What a reader should doubt (the generator fell behind).
    pub fn warn(self, text: &str) -> Cow<'_, str> {
        self.wrap(YELLOW, text)
    }

    /// What failed.
    pub fn bad(self, text: &str) -> Cow<'_, str> {
        self.wrap(RED, text)
    }

    fn wrap<'a>(self, code: &str, text: &'a str) -> Cow<'a, str> {
        if self.colour { Cow::Owned(format!("{code}{text}{RESET}")) } else { Cow::Borrowed(text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_under_no_color() {
        assert!(Paint::for_stream(true, None).is_colour());
        assert!(Paint::for_stream(true, Some(OsStr::new(""))).is_colour(), "an empty NO_COLOR is unset");
        assert!(!Paint::for_stream(true, Some(OsStr::new("1"))).is_colour());
        assert!(!Paint::for_stream(false, None).is_colour());
        let on = Paint::for_stream(true, None);
        assert_eq!(on.bad("FAIL"), "\x1b[1;31mFAIL\x1b[0m");
        assert_eq!(on.good("pass"), "\x1b[32mpass\x1b[0m");
        assert_eq!(Paint::PLAIN.bad("FAIL"), "FAIL");
    }
}
