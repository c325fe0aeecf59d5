//! The cohort table (`breakdown = ["agent_version"]`): a row per fleet and
//! agent version, a heartbeat counted with the version it carried. The
//! rows are built here once, as values; the text summary and the HTML,
//! Markdown and JUnit renderers only format them, so no two can show
//! different figures.

use super::Report;

/// One cohort's row: a fleet's heartbeats on one agent version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohortRow<'a> {
    pub fleet: &'a str,
    pub agent_version: &'a str,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed out of ended (ok or failed), in `[0, 1]`.
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The report's cohorts as rows, in the report's order; none when the
/// scenario does not break results down.
pub fn rows(report: &Report) -> impl ExactSizeIterator<Item = CohortRow<'_>> {
    report.cohorts.iter().map(|c| {
        let s = &c.stats;
        CohortRow {
            fleet: &c.fleet,
            agent_version: &c.agent_version,
            sent: s.sent,
            ok: s.ok,
            failed: s.failed,
            error_rate: s.error_rate(),
            p50_ms: s.latency_ms.p50,
            p99_ms: s.latency_ms.p99,
        }
    })
}
