//! The loopback guard of fleetstorm's own listeners (the dashboard,
//! `/metrics`): an address other than loopback is refused unless the user
//! says `--allow-remote-pages` (anyone who reaches such a port reads the
//! run and its report), and said on stderr when allowed.

use std::net::SocketAddr;

use crate::cli::error::CliError;

/// The flag that lets the listeners bind beyond loopback.
const ALLOW_REMOTE: &str = "--allow-remote-pages";

/// Refuses `addr` for `flag` unless it is loopback or `allow_remote`;
/// warns when a listener beyond loopback is allowed.
pub(super) fn check_reach(flag: &str, addr: SocketAddr, allow_remote: bool) -> Result<(), CliError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_remote {
        return Err(CliError::Usage(format!(
            "{flag} {addr} is not loopback: anyone who reaches it would read the run and its report; \
             bind 127.0.0.1, or pass {ALLOW_REMOTE} to serve it on {addr} all the same"
        )));
    }
    eprintln!("warning: {flag} {addr} answers anyone who can reach it ({ALLOW_REMOTE})");
    Ok(())
}
