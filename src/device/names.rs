//! Where a fleet's device names come from: a template (`cam-{index:05}`)
//! or the rows of an identities file (device `i` is row `i`). The
//! generator writes a name into every body; shards, the plan and `sample`
//! name devices the same way, so they all ask this one type.

use std::fmt;
use std::sync::Arc;

use crate::identities::Identities;

use super::template::{NameTemplate, TemplateError};

/// A fleet's device names.
#[derive(Clone)]
pub enum DeviceNames {
    Template(NameTemplate),
    /// The `name` column of an identities file, checked when it was read.
    Listed(Arc<Identities>),
}

/// Why a fleet's names cannot name its devices.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NamesError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the identities file lists {rows} devices, fewer than {devices}")]
    TooFewRows { devices: u64, rows: usize },
}

impl DeviceNames {
    /// Checks that devices `0..devices` all get valid, distinct names: a
    /// template's rendered names, or that the file has that many rows (its
    /// names were checked, and found distinct, as it was read).
    pub fn check_for(&self, devices: u64) -> Result<(), NamesError> {
        match self {
            DeviceNames::Template(t) => Ok(t.check_for(devices)?),
            DeviceNames::Listed(ids) if devices > ids.len() as u64 => {
                Err(NamesError::TooFewRows { devices, rows: ids.len() })
            }
            DeviceNames::Listed(_) => Ok(()),
        }
    }

    /// Appends device `index`'s name to `out`.
    pub fn render(&self, index: u64, out: &mut String) {
        match self {
            DeviceNames::Template(t) => t.render(index, out),
            DeviceNames::Listed(ids) => out.push_str(ids.name(index as usize)),
        }
    }

    /// Appends device `index`'s name to `out` as the inside of a JSON
    /// string (escaped, without quotes).
    #[inline]
    pub fn render_json(&self, index: u64, out: &mut Vec<u8>) {
        match self {
            DeviceNames::Template(t) => t.render_json(index, out),
            DeviceNames::Listed(ids) => {
                let name = ids.name(index as usize);
                if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                    out.extend_from_slice(name.as_bytes());
                } else {
                    let quoted = serde_json::to_vec(name).unwrap_or_default();
                    out.extend_from_slice(&quoted[1..quoted.len() - 1]);
                }
            }
        }
    }

    /// The identities the names come from, if a file.
    pub fn identities(&self) -> Option<&Arc<Identities>> {
        match self {
            DeviceNames::Template(_) => None,
            DeviceNames::Listed(ids) => Some(ids),
        }
    }
}

impl From<NameTemplate> for DeviceNames {
    fn from(t: NameTemplate) -> Self {
        DeviceNames::Template(t)
    }
}

impl fmt::Debug for DeviceNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceNames::Template(t) => write!(f, "Template({:?})", t.as_str()),
            // Counts and columns only: a row may hold credentials.
            DeviceNames::Listed(ids) => write!(f, "Listed({ids:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_are_the_rows_names_and_escaped_for_json() {
        let dir = std::env::temp_dir().join(format!("fleetstorm-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ids.jsonl");
        std::fs::write(&file, "{\"name\":\"cam-1\"}\n{\"name\":\"say \\\"hi\\\"\"}\n").unwrap();
        let ids = Identities::load(&file, |_| Ok(())).unwrap();
        let names = DeviceNames::Listed(Arc::new(ids));
        let (mut text, mut json) = (String::new(), Vec::new());
        names.render(1, &mut text);
        names.render_json(1, &mut json);
        assert_eq!(text, "say \"hi\"");
        assert_eq!(json, br#"say \"hi\""#);
        json.clear();
        names.render_json(0, &mut json);
        assert_eq!(json, b"cam-1");
        assert!(names.check_for(2).is_ok());
        assert_eq!(names.check_for(3), Err(NamesError::TooFewRows { devices: 3, rows: 2 }));
        assert!(format!("{names:?}").contains("devices: 2"), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
