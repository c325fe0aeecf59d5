//! Device identities read from a file: the devices a user provisioned, one
//! row per device. Each row has a `name` and the credentials its profile
//! needs: a token, a key, a password, certificate paths
//! (`docs/design/device-profiles.md`). Files are CSV (a header row, then
//! one row per device) or JSON Lines (one object of strings per line),
//! told apart by the file's extension.
//!
//! Millions of rows load into one arena: every field's text back to back in
//! one `String`, plus one `u32` end offset per field. That is no allocation
//! per row, and about the size of the file. A bad row is refused with
//! `file:line`, its column and what is wrong, and the message never shows
//! a credential's value: only `name` is ever quoted. Fields other than
//! `name` are credentials, sent in request paths and headers as they are,
//! so they must be printable ASCII without spaces. For the same reason
//! [`Identities`] has no `Serialize`, and its `Debug` shows counts and
//! column names only.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The column every identities file has: the device's name.
pub const NAME: &str = "name";

/// The devices of one file, in file order: device index `i` is row `i`.
pub struct Identities {
    /// The file's columns, `name` first, then the others in file order.
    columns: Vec<String>,
    /// Every field's text, row by row, column by column.
    text: String,
    /// Per row, per column: where that field ends in `text` (it starts
    /// where the one before it ends).
    ends: Vec<u32>,
    source: PathBuf,
}

/// Why an identities file cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum IdentitiesError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an identities file: name it .csv or .jsonl (JSON Lines)")]
    Format { path: String },
    #[error("{path}:{line}: {what}")]
    Row { path: String, line: u64, what: String },
    #[error("{path}:{line}: column `{column}`: {what}")]
    Field { path: String, line: u64, column: String, what: String },
    #[error("{path}:1: no `name` column (its columns: {columns})")]
    NoName { path: String, columns: String },
    #[error("{path}: no `{column}` column, which {needed_by} needs (its columns: {columns})")]
    MissingColumn { path: String, column: String, needed_by: String, columns: String },
    #[error("{path}:{line}: device {name:?} is listed twice (first at line {first})")]
    Duplicate { path: String, line: u64, first: u64, name: String },
    #[error("{path}: device {device:?}: column `{column}`: {what}")]
    Credential { path: String, device: String, column: String, what: String },
    #[error("{path}: no devices in it")]
    Empty { path: String },
    #[error("{path}: more than 4 GiB of identities; split the fleet")]
    TooLarge { path: String },
}

/// How a row's fields are read.
enum Layout {
    Csv,
    JsonLines,
}

impl Identities {
    /// Reads `path`. `check_name` is the profile's rule for device names
    /// (its message says what is wrong with the name it is given).
    pub fn load(path: &Path, check_name: impl Fn(&str) -> Result<(), String>) -> Result<Identities, IdentitiesError> {
        let shown = path.display().to_string();
        let layout = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Layout::Csv,
            Some("jsonl" | "ndjson") => Layout::JsonLines,
            _ => return Err(IdentitiesError::Format { path: shown }),
        };
        let file = std::fs::File::open(path).map_err(|source| IdentitiesError::Read { path: shown.clone(), source })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut loader = Loader::new(shown, size);
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        match layout {
            Layout::Csv => loader.csv(reader, &check_name)?,
            Layout::JsonLines => loader.json_lines(reader, &check_name)?,
        }
        loader.finish(path)
    }

    /// How many devices.
    pub fn len(&self) -> usize {
        self.ends.len() / self.columns.len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns, `name` first.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The index of column `name`, if the file has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Refuses the file unless it has every column in `needed`, for what
    /// `needed_by` names (a profile).
    pub fn require(&self, needed: &[&str], needed_by: &str) -> Result<(), IdentitiesError> {
        match needed.iter().find(|c| self.column(c).is_none()) {
            None => Ok(()),
            Some(column) => Err(IdentitiesError::MissingColumn {
                path: self.source.display().to_string(),
                column: column.to_string(),
                needed_by: needed_by.to_string(),
                columns: self.columns.join(", "),
            }),
        }
    }

    /// Device `row`'s field in `column`.
    pub fn get(&self, row: usize, column: usize) -> &str {
        let at = row * self.columns.len() + column;
        let start = if at == 0 { 0 } else { self.ends[at - 1] as usize };
        &self.text[start..self.ends[at] as usize]
    }

    /// Device `row`'s name.
    pub fn name(&self, row: usize) -> &str {
        self.get(row, 0)
    }

    /// An error for device `row`'s field in `column` (never its value).
    pub fn credential_error(&self, row: usize, column: usize, what: impl Into<String>) -> IdentitiesError {
        IdentitiesError::Credential {
            path: self.source.display().to_string(),
            device: self.name(row).to_string(),
            column: self.columns[column].clone(),
            what: what.into(),
        }
    }

    /// The file they were read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// What the identities hold in memory, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4 + self.columns.iter().map(String::capacity).sum::<usize>()
    }
}

impl fmt::Debug for Identities {
    /// Counts and column names: never a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("devices", &self.len())
            .field("columns", &self.columns)
            .field("from", &self.source)
            .finish()
    }
}

/// An identities file being read.
struct Loader {
    path: String,
    columns: Vec<String>,
    text: String,
    ends: Vec<u32>,
    /// The file line of each row (for duplicate names).
    lines: Vec<u64>,
}

impl Loader {
    fn new(path: String, size: u64) -> Loader {
        Loader {
            path,
            columns: Vec::new(),
            text: String::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 32)),
            ends: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn row_error(&self, line: u64, what: impl Into<String>) -> IdentitiesError {
        IdentitiesError::Row { path: self.path.clone(), line, what: what.into() }
    }

    fn field_error(&self, line: u64, column: usize, what: impl Into<String>) -> IdentitiesError {
        IdentitiesError::Field {
            path: self.path.clone(),
            line,
            column: self.columns[column].clone(),
            what: what.into(),
        }
    }

    /// Sets the columns from a header, in file order: `name` must be one,
    /// and comes first. Returns where each file column goes.
    fn header(&mut self, line: u64, names: Vec<String>) -> Result<Vec<usize>, IdentitiesError> {
        let mut seen = std::collections::HashSet::new();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(self.row_error(line, format!("column {} has no name", i + 1)));
            }
            if !seen.insert(n.as_str()) {
                return Err(self.row_error(line, format!("column `{n}` appears twice")));
            }
        }
        if !seen.contains(NAME) {
            return Err(IdentitiesError::NoName { path: self.path.clone(), columns: names.join(", ") });
        }
        self.columns =
            std::iter::once(NAME.to_string()).chain(names.iter().filter(|n| n.as_str() != NAME).cloned()).collect();
        // `name` goes first; the others keep their order after it.
        let mut next = 0;
        let place = names
            .iter()
            .map(|n| {
                if n == NAME {
                    0
                } else {
                    next += 1;
                    next
                }
            })
            .collect();
        Ok(place)
    }

    /// Appends one row, its fields in column order.
    fn push<'a>(
        &mut self,
        line: u64,
        fields: impl Iterator<Item = &'a str>,
        check_name: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<(), IdentitiesError> {
        for (column, field) in fields.enumerate() {
            if field.is_empty() {
                return Err(self.field_error(line, column, "empty"));
            }
            if column == 0 {
                check_name(field).map_err(|what| self.field_error(line, 0, format!("{field:?}: {what}")))?;
            } else if !field.bytes().all(|b| b.is_ascii_graphic()) {
                // Credentials go into paths and headers as they are; the
                // value is not shown.
                return Err(self.field_error(line, column, "must be printable ASCII without spaces"));
            }
            self.text.push_str(field);
            let end =
                u32::try_from(self.text.len()).map_err(|_| IdentitiesError::TooLarge { path: self.path.clone() })?;
            self.ends.push(end);
        }
        self.lines.push(line);
        Ok(())
    }

    fn csv(
        &mut self,
        reader: impl std::io::Read,
        check_name: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<(), IdentitiesError> {
        // Flexible: a row of the wrong length gets this module's message.
        let mut csv =
            csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).flexible(true).from_reader(reader);
        let mut record = csv::StringRecord::new();
        let mut place = Vec::new();
        let mut ordered: Vec<String> = Vec::new();
        loop {
            let before = csv.position().line();
            if !csv.read_record(&mut record).map_err(|e| self.csv_error(e, before))? {
                break;
            }
            let line = record.position().map_or(before, |p| p.line());
            if self.columns.is_empty() {
                place = self.header(line, record.iter().map(str::to_string).collect())?;
                ordered = vec![String::new(); place.len()];
                continue;
            }
            if record.len() != place.len() {
                return Err(
                    self.row_error(line, format!("{} fields, but the header has {}", record.len(), place.len()))
                );
            }
            for (i, f) in record.iter().enumerate() {
                ordered[place[i]].clear();
                ordered[place[i]].push_str(f);
            }
            self.push(line, ordered.iter().map(String::as_str), check_name)?;
        }
        Ok(())
    }

    fn csv_error(&self, e: csv::Error, line: u64) -> IdentitiesError {
        let line = e.position().map_or(line, |p| p.line());
        match e.kind() {
            csv::ErrorKind::Io(_) => IdentitiesError::Read { path: self.path.clone(), source: e.into() },
            csv::ErrorKind::Utf8 { .. } => self.row_error(line, "not valid UTF-8"),
            _ => self.row_error(line, "not a CSV row"),
        }
    }

    fn json_lines(
        &mut self,
        reader: impl BufRead,
        check_name: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<(), IdentitiesError> {
        let mut ordered: Vec<Option<String>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (n, text) in reader.lines().enumerate() {
            let line = n as u64 + 1;
            let text = text.map_err(|source| match source.kind() {
                std::io::ErrorKind::InvalidData => self.row_error(line, "not valid UTF-8"),
                _ => IdentitiesError::Read { path: self.path.clone(), source },
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .map_err(|e| self.row_error(line, format!("not a JSON object: {}", json_reason(&e))))?;
            if self.columns.is_empty() {
                let mut names: Vec<String> = object.keys().cloned().collect();
                names.sort();
                self.header(line, names)?;
                index = self.columns.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
                ordered = vec![None; self.columns.len()];
            }
            for slot in ordered.iter_mut() {
                *slot = None;
            }
            for (key, value) in object {
                let Some(&column) = index.get(&key) else {
                    return Err(self.row_error(line, format!("column `{key}` is not in the first row")));
                };
                match value {
                    serde_json::Value::String(s) => ordered[column] = Some(s),
                    other => {
                        let found = match other {
                            serde_json::Value::Null => "null",
                            serde_json::Value::Bool(_) => "a boolean",
                            serde_json::Value::Number(_) => "a number",
                            serde_json::Value::Array(_) => "an array",
                            _ => "an object",
                        };
                        return Err(self.field_error(line, column, format!("expected a string, found {found}")));
                    }
                }
            }
            if let Some(missing) = ordered.iter().position(Option::is_none) {
                return Err(self.field_error(line, missing, "missing"));
            }
            self.push(line, ordered.iter().map(|f| f.as_deref().unwrap_or_default()), check_name)?;
        }
        Ok(())
    }

    /// Checks that no name is listed twice, and hands the rows over.
    fn finish(self, path: &Path) -> Result<Identities, IdentitiesError> {
        let width = self.columns.len().max(1);
        let rows = self.ends.len() / width;
        if rows == 0 {
            return Err(IdentitiesError::Empty { path: self.path });
        }
        let name = |row: usize| {
            let at = row * width;
            let start = if at == 0 { 0 } else { self.ends[at - 1] as usize };
            &self.text[start..self.ends[at] as usize]
        };
        // Sorting row numbers by name: no copy of a million names.
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_unstable_by(|&a, &b| name(a as usize).cmp(name(b as usize)).then(a.cmp(&b)));
        if let Some(pair) = order.windows(2).find(|p| name(p[0] as usize) == name(p[1] as usize)) {
            let (first, again) = (pair[0] as usize, pair[1] as usize);
            return Err(IdentitiesError::Duplicate {
                path: self.path.clone(),
                line: self.lines[again],
                first: self.lines[first],
                name: name(again).to_string(),
            });
        }
        let Loader { columns, mut text, mut ends, .. } = self;
        text.shrink_to_fit();
        ends.shrink_to_fit();
        Ok(Identities { columns, text, ends, source: path.to_path_buf() })
    }
}

/// serde_json's reason without its position (the line is given apart; the
/// column is within that line's text).
fn json_reason(e: &serde_json::Error) -> String {
    format!("{} at column {}", e.to_string().split(" at line ").next().unwrap_or_default(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// A directory of its own, removed after the test.
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "fleetstorm-identities-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).unwrap();
                Dir(dir)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn any_name(_: &str) -> Result<(), String> {
        Ok(())
    }

    fn load(name: &str, text: &str) -> Result<Identities, IdentitiesError> {
        let (_dir, path) = file(name, text);
        Identities::load(&path, any_name)
    }

    #[test]
    fn csv_and_json_lines_give_the_same_devices_name_first() {
        let csv = load("d.csv", "token,name\nT1,cam-1\n\"T,2\",cam-2\n").unwrap();
        let jsonl =
            load("d.jsonl", "{\"token\":\"T1\",\"name\":\"cam-1\"}\n\n{\"name\":\"cam-2\",\"token\":\"T,2\"}\n")
                .unwrap();
        for ids in [&csv, &jsonl] {
            assert_eq!(ids.columns(), ["name", "token"]);
            assert_eq!(ids.len(), 2);
            let token = ids.column("token").unwrap();
            assert_eq!((ids.name(0), ids.get(0, token)), ("cam-1", "T1"));
            assert_eq!((ids.name(1), ids.get(1, token)), ("cam-2", "T,2"));
        }
        assert!(csv.require(&["token"], "thingsboard").is_ok());
        let e = csv.require(&["token", "key"], "azure-iot-hub").unwrap_err().to_string();
        assert!(e.ends_with("no `key` column, which azure-iot-hub needs (its columns: name, token)"), "{e}");
    }

    #[test]
    fn a_bad_row_is_named_by_line_and_column_and_no_credential_is_shown() {
        let secret = "s3cr3t-T0KEN";
        let cases: Vec<(&str, String, &str)> = vec![
            ("d.csv", format!("name,token\ncam-1,{secret}\ncam-2,\n"), ":3: column `token`: empty"),
            ("d.csv", format!("name,token\ncam-1,{secret},x\n"), ":2: 3 fields, but the header has 2"),
            ("d.csv", format!("token\n{secret}\n"), ":1: no `name` column (its columns: token)"),
            (
                "d.csv",
                format!("name,token\ncam-1,{secret}\ncam-1,{secret}x\n"),
                ":3: device \"cam-1\" is listed twice (first at line 2)",
            ),
            ("d.csv", "name,name\n".to_string(), ":1: column `name` appears twice"),
            ("d.csv", "name,token\n".to_string(), ": no devices in it"),
            (
                "d.jsonl",
                format!("{{\"name\":\"cam-1\",\"token\":\"{secret}\"}}\n{{\"name\":\"cam-2\"}}\n"),
                ":2: column `token`: missing",
            ),
            (
                "d.jsonl",
                format!("{{\"name\":\"cam-1\",\"token\":\"{secret}\"}}\n{{\"name\":\"cam-2\",\"token\":7}}\n"),
                ":2: column `token`: expected a string, found a number",
            ),
            (
                "d.jsonl",
                format!("{{\"name\":\"cam-1\",\"token\":\"{secret}\"}}\n{{\"name\":\"cam-2\",\"tokn\":\"x\"}}\n"),
                ":2: column `tokn` is not in the first row",
            ),
            (
                "d.jsonl",
                format!("{{\"name\":\"cam-1\",\"token\":\"{secret}\"\n"),
                ":1: not a JSON object: EOF while parsing an object",
            ),
            (
                "d.jsonl",
                format!(
                    "{{\"name\":\"cam-1\",\"token\":\"{secret}\"}}\n{{\"name\":\"cam-2\",\"token\":\"{secret} x\"}}\n"
                ),
                ":2: column `token`: must be printable ASCII without spaces",
            ),
            ("d.txt", "name\ncam-1\n".to_string(), ": not an identities file: name it .csv or .jsonl (JSON Lines)"),
        ];
        for (name, text, want) in cases {
            let e = load(name, &text).unwrap_err().to_string();
            assert!(e.contains(want), "{name} {text:?}: got {e:?}, want {want:?}");
            assert!(!e.contains(secret), "a credential in a message: {e}");
        }
        let (_dir, path) = file("d.csv", "name,token\nBad Name!,x\n");
        let e = Identities::load(&path, |n| if n.contains(' ') { Err("has a space".into()) } else { Ok(()) })
            .unwrap_err()
            .to_string();
        assert!(e.ends_with(":2: column `name`: \"Bad Name!\": has a space"), "{e}");
        let shown = format!("{:?}", load("d.csv", &format!("name,token\ncam-1,{secret}\n")).unwrap());
        assert!(!shown.contains(secret) && shown.contains("devices: 1"), "{shown}");
    }
}
