//! [`ScenarioError`]: a mistake in a scenario file, with its place.
//!
//! The parsers place most mistakes themselves. Not every one: an error
//! about a whole table of an array (a fleet whose settings contradict each
//! other, `fleets[1]`) comes from toml with the array's span, which starts
//! at the *first* `[[fleets]]` header, and from serde_json at the point it
//! reached, past the object. Such errors are placed again at the start of
//! the table or object their key path names (see [`Node`]), found in a
//! second, position-keeping read of the text; checks made after parsing
//! place their errors by key path the same way.

use std::fmt;
use std::ops::Range;

use super::Format;

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

    /// A TOML error; `path` is where deserializing was when it failed
    /// (none for a syntax error).
    pub(super) fn from_toml(
        origin: &str,
        text: &str,
        path: Option<&serde_path_to_error::Path>,
        e: &toml::de::Error,
    ) -> Self {
        let mut at = e.span().map(|span| span.start);
        if let Some(node) = path.and_then(|p| Node::find(text, Format::Toml, &steps(p)))
            && at.is_none_or(|at| at < node.start)
        {
            at = Some(node.start);
        }
        let (line, column) = at.map_or((None, None), |at| line_column(text, at));
        Self::positioned(origin, text, path.map(|p| p.to_string()), line, column, e.message().trim_end())
    }

    /// A JSON error; `path` as for [`Self::from_toml`].
    pub(super) fn from_json(
        origin: &str,
        text: &str,
        path: Option<&serde_path_to_error::Path>,
        e: &serde_json::Error,
    ) -> Self {
        // serde_json appends " at line L column C" to its messages; the
        // position is shown separately here.
        let full = e.to_string();
        let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
        let (mut line, mut column) =
            if e.line() == 0 { (None, None) } else { (Some(saturate(e.line())), Some(saturate(e.column().max(1)))) };
        // A value that does not fit its place (not a syntax error) is
        // placed within the member or element it is about.
        if e.classify() == serde_json::error::Category::Data
            && let Some(node) = path.and_then(|p| Node::find(text, Format::Json, &steps(p)))
        {
            // serde_json places an error about a whole object or array at
            // its closing bracket, or past it; an error about a scalar is
            // where it should be.
            let at = line.zip(column).map(|(l, c)| offset_of(text, l, c));
            let container = matches!(text.as_bytes().get(node.value), Some(b'{' | b'['));
            if container && at.is_none_or(|at| at < node.start || at + 1 >= node.end) {
                (line, column) = line_column(text, node.value);
            }
        }
        Self::positioned(origin, text, path.map(|p| p.to_string()), line, column, message)
    }

    /// A problem found after parsing, placed at the member's value or the
    /// element that `key` names (`fleets[1].name`), or as near it as the
    /// text has (the whole file if nothing of it is there).
    pub(super) fn at_key(origin: &str, text: &str, format: Format, key: &[Step], message: &str) -> Self {
        let (line, column) = match Node::find(text, format, key) {
            Some(node) => line_column(text, node.value),
            None => (None, None),
        };
        let shown: String = key
            .iter()
            .enumerate()
            .map(|(i, step)| match step {
                Step::Key(k) if i == 0 => k.clone(),
                Step::Key(k) => format!(".{k}"),
                Step::Index(n) => format!("[{n}]"),
            })
            .collect();
        Self::positioned(origin, text, Some(shown), line, column, message)
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

/// One step of a key path: a member of a table or object, or an element
/// of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The steps of serde's path (variants and unknown steps end it).
fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .map_while(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Where the deepest member or element of a key path that the text has
/// lies, in bytes. A member runs from its key (or its table's header,
/// which comes first) to the end of its value; an element is its value (in
/// TOML, for a table of an array of tables, its `[[...]]` header).
struct Node {
    start: usize,
    end: usize,
    /// Where its value starts.
    value: usize,
}

impl Node {
    fn find(text: &str, format: Format, path: &[Step]) -> Option<Node> {
        let (range, value) = match format {
            Format::Toml => toml_node(text, path),
            Format::Json => json_node(text.as_bytes(), path),
        }?;
        Some(Node { start: range.start, end: range.end, value })
    }
}

/// The range of the deepest node of `path` in `text`, and where its value starts.
fn toml_node(text: &str, path: &[Step]) -> Option<(Range<usize>, usize)> {
    use toml::de::{DeTable, DeValue};
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut value = &root;
    let mut found = None;
    for step in path {
        let next = match (step, value) {
            (Step::Key(k), DeValue::Table(t)) => {
                t.iter().find(|(key, _)| key.get_ref().as_ref() == k.as_str()).map(|(key, v)| {
                    let (ks, vs) = (key.span(), v.span());
                    (ks.start.min(vs.start)..ks.end.max(vs.end), v)
                })
            }
            (Step::Index(n), DeValue::Array(a)) => a.get(*n).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((range, v)) = next else { break };
        found = Some((range, v.span().start));
        value = v.get_ref();
    }
    found
}

/// Like `toml_node`, by a light scan of JSON text (which the parser has
/// read up to the error, so the path's own part is well formed; a
/// malformed rest only makes the found node open-ended).
fn json_node(b: &[u8], path: &[Step]) -> Option<(Range<usize>, usize)> {
    let mut at = json_ws(b, 0);
    let mut found = None;
    for step in path {
        let Some((start, value)) = (match step {
            Step::Key(k) => json_member(b, at, k),
            Step::Index(n) => json_element(b, at, *n).map(|i| (i, i)),
        }) else {
            break;
        };
        at = value;
        found = Some((start..json_value(b, value).unwrap_or(b.len()), value));
    }
    found
}

/// Where member `key` of the object at `at` begins (its key's quote), and
/// where its value does.
fn json_member(b: &[u8], at: usize, key: &str) -> Option<(usize, usize)> {
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = json_ws(b, at + 1);
    loop {
        let key_end = json_string(b, i)?;
        let colon = json_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let value = json_ws(b, colon + 1);
        if &b[i + 1..key_end - 1] == key.as_bytes() {
            return Some((i, value));
        }
        i = json_ws(b, json_value(b, value)?);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i = json_ws(b, i + 1);
    }
}

/// Where element `n` of the array at `at` begins.
fn json_element(b: &[u8], at: usize, n: usize) -> Option<usize> {
    if b.get(at) != Some(&b'[') {
        return None;
    }
    let mut i = json_ws(b, at + 1);
    for _ in 0..n {
        i = json_ws(b, json_value(b, i)?);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i = json_ws(b, i + 1);
    }
    (!matches!(b.get(i), None | Some(b']'))).then_some(i)
}

fn json_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the string that starts at `i` (past its closing quote).
fn json_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of the value that starts at `i`.
fn json_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => json_string(b, i),
        b'{' | b'[' => {
            // Brackets balance outside strings; which kind closes which
            // was the parser's to check.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = json_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while b.get(j).is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The byte offset of 1-based `line` and `column` (in bytes, as
/// serde_json counts them).
fn offset_of(text: &str, line: u32, column: u32) -> usize {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1) as usize).map(str::len).sum();
    (start + column.saturating_sub(1) as usize).min(text.len())
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

    fn path(steps: &[&str]) -> Vec<Step> {
        steps.iter().map(|s| s.parse().map_or_else(|_| Step::Key(s.to_string()), Step::Index)).collect()
    }

    #[test]
    fn json_nodes_are_found_past_strings_and_nesting() {
        let text = r#"{"a": {"s": "}]\"{[", "n": [1, {"x": [2]}]}, "fleets": [ {"name": "f1"} ,{"name": "f2"}]}"#;
        let at = |steps: &[&str]| json_node(text.as_bytes(), &path(steps)).map(|(r, v)| (&text[r], &text[v..v + 1]));
        assert_eq!(at(&["fleets", "1"]), Some((r#"{"name": "f2"}"#, "{")));
        assert_eq!(at(&["fleets", "1", "name"]), Some((r#""name": "f2""#, "\"")));
        assert_eq!(at(&["a", "n", "1", "x", "0"]), Some(("2", "2")));
        // As deep as the text goes.
        assert_eq!(
            at(&["fleets", "7", "name"]).map(|n| n.0.len()),
            Some(r#""fleets": [ {"name": "f1"} ,{"name": "f2"}]"#.len())
        );
        assert_eq!(at(&["nope"]), None);
        // Any prefix of the text (a parse stopped there) is scanned without panicking.
        for end in 0..=text.len() {
            for steps in [&["fleets", "1", "name"][..], &["a", "s"], &["a", "n", "1", "x", "0"]] {
                let _ = json_node(&text.as_bytes()[..end], &path(steps));
            }
        }
    }

    #[test]
    fn toml_nodes_are_the_tables_own_headers() {
        let text = "[[fleets]]\nname = \"a\"\n\n[[fleets]]\nname = \"b\"\n[[fleets.models]]\nname = \"m\"\n";
        let at = |steps: &[&str]| toml_node(text, &path(steps)).map(|(r, v)| (line_column(text, r.start), v));
        assert_eq!(at(&["fleets", "1"]).map(|n| n.0), Some((Some(4), Some(1))));
        assert_eq!(at(&["fleets", "1", "models", "0"]).map(|n| n.0), Some((Some(6), Some(1))));
        assert_eq!(at(&["fleets", "1", "name"]).map(|n| line_column(text, n.1)), Some((Some(5), Some(8))));
        assert_eq!(at(&["fleets", "0"]).map(|n| n.0), Some((Some(1), Some(1))));
        assert_eq!(toml_node("a = [", &path(&["a"])), None, "unparsable text: no node");
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (Some(1), Some(1)));
        assert_eq!(line_column(text, 6), (Some(2), Some(1)));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_column(text, 12), (Some(2), Some(6)));
    }
}
