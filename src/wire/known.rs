//! The devices `serve` knows for each device profile: identities files
//! indexed by each profile's key (a ThingsBoard token, a Hono auth-id, an
//! Azure device id, a thing name), and the credentials shadow signatures
//! are checked with. Profiles' checks look devices up here.

use std::sync::Arc;

use super::profile::ProfileName;
use crate::identities::{Identities, IdentitiesError};

/// One identities file, indexed by one of its columns.
struct Index {
    ids: Arc<Identities>,
    /// The column looked up, and the profile's columns in the file.
    key: usize,
    columns: Vec<usize>,
    /// Row numbers sorted by the key column.
    order: Vec<u32>,
}

impl Index {
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let at = self.order.binary_search_by(|&row| self.ids.get(row as usize, self.key).cmp(key)).ok()?;
        Some(Found { index: self, row: self.order[at] as usize })
    }
}

/// A device found in an identities file.
pub struct Found<'a> {
    index: &'a Index,
    row: usize,
}

impl Found<'_> {
    pub fn name(&self) -> &str {
        self.index.ids.name(self.row)
    }

    /// Its field in column `column` of its file.
    pub fn get(&self, column: usize) -> &str {
        self.index.ids.get(self.row, column)
    }

    /// Its field in the column named `name`, if its file has one.
    pub fn column(&self, name: &str) -> Option<&str> {
        let at = self.index.ids.column(name)?;
        Some(self.index.ids.get(self.row, at))
    }

    /// Its field `k` of the profile's [`ProfileName::columns`].
    pub fn field(&self, k: usize) -> &str {
        self.index.ids.get(self.row, self.index.columns[k])
    }
}

/// The devices known for each profile.
#[derive(Default)]
pub struct Known {
    known: Vec<(ProfileName, Index)>,
    /// The credentials shadow requests' SigV4 signatures are checked with.
    sigv4: Option<crate::transport::http::sigv4::Signer>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<_> = self.known.iter().map(|(p, i)| (p, i.ids.len())).collect();
        f.debug_struct("Known").field("devices", &known).field("sigv4", &self.sigv4.is_some()).finish()
    }
}

impl Known {
    /// Knows `ids`' devices for `profile`: only they are let in, once a
    /// profile has any.
    pub fn add_identities(&mut self, profile: ProfileName, ids: Arc<Identities>) -> Result<(), IdentitiesError> {
        ids.require(profile.columns(), &format!("the {profile} profile"))?;
        let columns: Vec<usize> = profile.columns().iter().filter_map(|c| ids.column(c)).collect();
        // Looked up by: the token; the Hono auth-id; the device's name.
        let key = match profile {
            ProfileName::Thingsboard => columns[0],
            ProfileName::Hono => columns[1],
            ProfileName::AzureIotHub
            | ProfileName::AwsIotShadow
            | ProfileName::SagemakerEdge
            | ProfileName::Custom
            | ProfileName::Mqtt => 0,
        };
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| ids.get(a as usize, key).cmp(ids.get(b as usize, key)));
        self.known.push((profile, Index { ids, key, columns, order }));
        Ok(())
    }

    /// Whether any identities were given for `profile`.
    pub fn has_identities(&self, profile: ProfileName) -> bool {
        self.known.iter().any(|(p, _)| *p == profile)
    }

    /// The device of `profile` whose key (its token, Hono auth-id or
    /// name; see [`Self::add_identities`]) is `key`, in the first file
    /// that has it.
    pub fn find(&self, profile: ProfileName, key: &str) -> Option<Found<'_>> {
        self.known.iter().filter(|(p, _)| *p == profile).find_map(|(_, index)| index.find(key))
    }

    /// Verifies the SigV4 signatures of shadow requests with `signer`'s
    /// credentials (else only their shape is checked).
    pub fn set_sigv4(&mut self, signer: crate::transport::http::sigv4::Signer) {
        self.sigv4 = Some(signer);
    }

    pub fn sigv4(&self) -> Option<&crate::transport::http::sigv4::Signer> {
        self.sigv4.as_ref()
    }
}
