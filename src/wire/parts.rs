//! What the profiles' modules share to build a request: the body's
//! envelope, each device's credentials, its name, and the path and header
//! pieces. A leaf beside them, so that the profiles and the dispatch in
//! `wire`'s own file do not use each other in a loop.

use std::sync::Arc;

use crate::device::{Device, DeviceNames, FleetGenerator};
use crate::identities::Identities;
use crate::transport::HttpRoute;

/// How a profile wraps a device's state object (`Device::write_state`'s
/// members) and its timestamp into a body: `open`, the members, `ts` (the
/// text before the timestamp), the timestamp, `close`.
pub(crate) struct Envelope {
    pub open: &'static [u8],
    pub ts: &'static [u8],
    pub close: &'static [u8],
}

impl Envelope {
    /// The members with the timestamp beside them: `{..., "ts": ms}`.
    pub const FLAT: Envelope = Envelope { open: b"{", ts: b",\"ts\":", close: b"}" };

    /// Advances `device` by one heartbeat at `now_ms` and appends its body
    /// to `body`; returns the heartbeat's timestamp.
    pub fn write(&self, generator: &FleetGenerator, device: &mut Device, now_ms: u64, body: &mut Vec<u8>) -> u64 {
        body.extend_from_slice(self.open);
        let ts = device.write_state(generator, now_ms, body);
        body.extend_from_slice(self.ts);
        crate::device::generate::write_integer(ts, body);
        body.extend_from_slice(self.close);
        ts
    }
}

/// Each device's credential fields: from its identities row, or by the
/// rule (module docs) from its name.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The identities, and where each of the profile's columns is in them.
    listed: Option<(Arc<Identities>, Vec<usize>)>,
}

impl Credentials {
    /// The credentials of a fleet named by `names` whose profile needs
    /// `columns` ([`super::ProfileName::columns`]): its identities' columns (which
    /// the scenario checked are there), or the rule.
    pub fn new(columns: &[&str], names: &DeviceNames) -> Credentials {
        let listed = names.identities().and_then(|ids| {
            let columns: Option<Vec<usize>> = columns.iter().map(|c| ids.column(c)).collect();
            columns.map(|c| (ids.clone(), c))
        });
        Credentials { listed }
    }

    /// Device `index`'s field `k` (an index into the profile's
    /// [`super::ProfileName::columns`]), or `None` when the rule applies.
    pub fn listed(&self, index: u64, k: usize) -> Option<&str> {
        self.listed.as_ref().map(|(ids, columns)| ids.get(index as usize, columns[k]))
    }
}

/// What a path segment must escape: controls, space and the characters
/// that delimit a path, its query or its fragment.
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Device `index`'s name.
pub(crate) fn device_name(generator: &FleetGenerator, index: u64) -> String {
    let mut name = String::new();
    generator.names.render(index, &mut name);
    name
}

/// A `POST` [`HttpRoute`] from a target known to be a valid path (built
/// from checked names and credentials; see the profiles' tests).
pub(crate) fn http_route(target: String, headers: Vec<(http::HeaderName, http::HeaderValue)>) -> HttpRoute {
    let target = http::uri::PathAndQuery::try_from(target)
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/invalid-device-path"));
    HttpRoute { method: http::Method::POST, target, headers }
}

/// `value` as a header value; one a checked credential cannot fail to
/// be, so a failure sends an empty one (which the backend refuses).
pub(crate) fn header_value(value: &str) -> http::HeaderValue {
    http::HeaderValue::try_from(value).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}
