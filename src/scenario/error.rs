//! [`ScenarioError`]: a mistake in a scenario file, with its place.

use std::fmt;

/// A scenario that cannot be used, and where the problem lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or other origin) of the scenario.
    pub origin: String,
    /// 1-based line and column, when the parser knows them.
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// The key path, e.g. `fleets[0].devices`, when known.
    pub key: Option<String>,
    pub message: String,
    /// The text of the offending line, quoted under the message.
    pub source_line: Option<String>,
}

impl std::error::Error for ScenarioError {}

impl ScenarioError {
    /// A problem with the file as a whole (unreadable, unknown format).
    pub fn whole_file(origin: &str, message: &str) -> Self {
        ScenarioError {
            origin: origin.to_string(),
            line: None,
            column: None,
            key: None,
            message: message.to_string(),
            source_line: None,
        }
    }

    pub(super) fn from_toml(origin: &str, text: &str, key: Option<String>, e: &toml::de::Error) -> Self {
        let (line, column) = match e.span() {
            Some(span) => line_column(text, span.start),
            None => (None, None),
        };
        Self::positioned(origin, text, key, line, column, e.message().trim_end())
    }

    pub(super) fn from_json(origin: &str, text: &str, key: Option<String>, e: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its messages; the
        // position is shown separately here.
        let full = e.to_string();
        let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
        let (line, column) =
            if e.line() == 0 { (None, None) } else { (Some(saturate(e.line())), Some(saturate(e.column().max(1)))) };
        Self::positioned(origin, text, key, line, column, message)
    }

    /// A problem found after parsing, placed at the first occurrence of
    /// `needle` in the text (or on the whole file if it is not there).
    pub(super) fn at_text(origin: &str, text: &str, needle: &str, key: &str, message: &str) -> Self {
        let (line, column) = match text.find(needle) {
            Some(at) => line_column(text, at),
            None => (None, None),
        };
        Self::positioned(origin, text, Some(key.to_string()), line, column, message)
    }

    fn positioned(
        origin: &str,
        text: &str,
        key: Option<String>,
        line: Option<u32>,
        column: Option<u32>,
        message: &str,
    ) -> Self {
        let key = key.filter(|k| !k.is_empty() && k != ".");
        ScenarioError {
            origin: origin.to_string(),
            line,
            column,
            key,
            message: message.to_string(),
            source_line: line.and_then(|l| text.lines().nth(l as usize - 1)).map(str::to_string),
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (Option<u32>, Option<u32>) {
    let at = at.min(text.len());
    let Some(before) = text.get(..at) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (Some(saturate(line)), Some(saturate(column)))
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let (Some(line), Some(text)) = (self.line, &self.source_line) {
            let gutter = line.to_string().len();
            write!(f, "\n{:gutter$} |\n{line} | {text}", "")?;
            if let Some(column) = self.column {
                let column = column as usize;
                write!(f, "\n{:gutter$} | {:>column$}", "", "^")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (Some(1), Some(1)));
        assert_eq!(line_column(text, 6), (Some(2), Some(1)));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_column(text, 12), (Some(2), Some(6)));
    }
}
