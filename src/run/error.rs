//! Why a run could not happen or complete: one variant per cause, each
//! keeping the error it came from (`source()`), and the exit code each
//! earns by its [`RunErrorKind`].

use std::time::Duration;

use crate::scenario::ScaleError;
use crate::transport::EndpointError;
use crate::transport::http::sigv4::SignError;
use crate::transport::tls::TlsError;

/// Why a run could not happen or complete. Each message is whole (it
/// names its cause's text), so a caller prints `to_string()` alone; the
/// cause itself stays reachable through `source()`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A command-line flag that changes the scenario is not valid.
    #[error("{0}")]
    Flag(String),
    /// `--devices-scale` or `--rate-scale` cannot apply to a fleet.
    #[error("{message}")]
    Scale {
        message: String,
        #[source]
        source: ScaleError,
    },
    /// The plan cannot run here or at all (resources, a capacity step).
    #[error("{0}")]
    Plan(String),
    /// The target's TLS settings (certificates, keys) cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The SigV4 settings (credentials) cannot be used.
    #[error("{0}")]
    SigV4(#[from] SignError),
    /// The endpoint cannot be built from the target.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// The built-in backend did not start.
    #[error("cannot start the built-in backend: {0}")]
    Builtin(#[source] std::io::Error),
    /// The target's host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// An observer (`observe`) could not open its session or subscribe.
    #[error("{0}")]
    Observer(String),
    /// The target's host name resolved to nothing.
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// `--start-at` passed before the devices were ready: nothing was sent.
    #[error(
        "not ready at the start instant: the devices were built {:.3} s after it; nothing was sent \
         (start later, or give the shard more CPU)",
        late.as_secs_f64()
    )]
    NotReady { late: Duration },
}

/// What a [`RunError`] means for the command that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunErrorKind {
    /// The scenario or the plan is impossible (exit code 2).
    Invalid,
    /// The run itself failed (exit code 1).
    Failed,
    /// `--start-at` passed before the devices were ready (exit code 4).
    NotReady,
}

impl RunError {
    pub fn kind(&self) -> RunErrorKind {
        match self {
            RunError::Flag(_)
            | RunError::Scale { .. }
            | RunError::Plan(_)
            | RunError::Tls(_)
            | RunError::SigV4(_)
            | RunError::Endpoint(_) => RunErrorKind::Invalid,
            RunError::Builtin(_) | RunError::Resolve { .. } | RunError::NoAddress { .. } | RunError::Observer(_) => {
                RunErrorKind::Failed
            }
            RunError::NotReady { .. } => RunErrorKind::NotReady,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_cause_stays_reachable_and_the_message_is_whole() {
        let e = RunError::Resolve {
            host: "backend.test".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"),
        };
        assert_eq!(e.to_string(), "cannot resolve backend.test: no such host");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("no such host"));
        assert_eq!(e.kind(), RunErrorKind::Failed);
        let e = RunError::NotReady { late: Duration::from_millis(1500) };
        assert!(e.to_string().contains("built 1.500 s after it"), "{e}");
        assert_eq!(e.kind(), RunErrorKind::NotReady);
        assert_eq!(RunError::Plan("too many".into()).kind(), RunErrorKind::Invalid);
    }
}
