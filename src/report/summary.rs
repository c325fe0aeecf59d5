//! The terminal summary of a report.

use std::fmt::Write as _;

use super::paint::Paint;
use super::{Report, Stats};

impl Report {
    /// The terminal summary: a table per fleet and in total, and the
    /// verdict on the generator's own health.
    pub fn summary(&self) -> String {
        self.summary_painted(Paint::PLAIN)
    }

    /// [`Report::summary`], its verdicts coloured by `paint`.
    pub fn summary_painted(&self, paint: Paint) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            out,
            "fleetstorm run \"{}\" against {} ({}, seed {}){}",
            s.name,
            s.destination(),
            s.target.connections,
            s.seed,
            if self.interrupted { paint.bad(" — INTERRUPTED") } else { "".into() }
        );
        if let Some(scale) = &s.scale {
            let _ = writeln!(out, "{}", scale.describe());
        }
        if let Some(shard) = &self.shard {
            let _ = writeln!(out, "shard {}/{} (scenario hash {:.12})", shard.index, shard.count, shard.scenario_hash);
        }
        if let Some(m) = &self.merged {
            let _ = writeln!(out, "merged from {} shards (scenario hash {:.12})", m.shards, m.scenario_hash);
        }
        if let Some(start) = &self.start {
            let _ = writeln!(out, "started at {} ({:.1} ms late)", start.at, start.lag_ms);
        }
        let _ = writeln!(
            out,
            "{}{}{}",
            match (&s.target.http, &s.target.mqtt) {
                (_, Some(version)) => format!("MQTT {version}"),
                (Some(http), None) => http.clone(),
                (None, None) => String::new(),
            },
            s.target.tls.as_ref().map_or(String::new(), |t| format!(", TLS: {t}")),
            s.target.sigv4.as_ref().map_or(String::new(), |v| format!(", SigV4 {v}"))
        );
        if s.target.tls.as_ref().is_some_and(|t| t.check == super::TlsCheck::Insecure) {
            let _ = writeln!(out, "WARNING: tls.insecure: the server's certificate was not verified");
        }
        let _ = writeln!(
            out,
            "ran {:.1} s of {:.1} s planned; started {} after {:.2} s building devices",
            self.duration_s, s.planned_duration_s, self.started_at, self.startup_s
        );
        if let Some(lengthened) = self.drain_lengthened() {
            let _ = writeln!(
                out,
                "sending took {:.2} s: heartbeats queued for a pooled connection went up to {:.2} s after the end; \
                 achieved rates are over the {:.2} s",
                self.sending_seconds(),
                lengthened,
                self.sending_seconds()
            );
        }
        out.push('\n');
        let rows: Vec<&Stats> = self.rows().collect();
        let name = Stats::label;
        let width = rows.iter().map(|r| name(r).len()).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "{:<width$}  {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "fleet", "offered/s", "achieved/s", "scheduled", "sent", "missed", "ok", "failed"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "{:<width$}  {:>10.1} {:>10.1} {:>10} {:>9} {:>9} {:>9} {:>9}",
                name(r),
                r.offered_rate,
                r.achieved_rate,
                r.scheduled,
                r.sent,
                r.missed,
                r.ok,
                r.failed
            );
        }
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "fleet", "(ms)", "p50", "p75", "p90", "p95", "p99", "p99.9", "max"
        );
        for r in &rows {
            for (what, p) in r.series() {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:<15} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    name(r),
                    what,
                    p.p50,
                    p.p75,
                    p.p90,
                    p.p95,
                    p.p99,
                    p.p999,
                    p.max
                );
            }
        }
        let failures: Vec<String> =
            self.totals.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "\nfailures: {}", if failures.is_empty() { "none".into() } else { failures.join(", ") });
        let _ = writeln!(out, "answers: {}", self.totals.codes_line());
        if self.totals.retries > 0 {
            let t = &self.totals;
            let _ = writeln!(
                out,
                "retries: {} ({:.1}% on top of the {} heartbeats sent: the backend got {} requests); {} heartbeats succeeded after retrying",
                t.retries,
                100.0 * t.retries as f64 / t.sent.max(1) as f64,
                t.sent,
                t.sent + t.retries,
                t.recovered
            );
        }
        if self.totals.retry_pending > 0 {
            let _ = writeln!(
                out,
                "retries pending at the end: {} heartbeats were waiting for a retry when the run ended: sent, \
                 neither ok nor failed, and left out of the error rate",
                self.totals.retry_pending
            );
        }
        // One fleet: its line says it all, without the same TOTAL line.
        let single = self.fleets.len() == 1;
        for r in rows.iter().filter(|r| !(single && r.name.is_none())) {
            if r.unacknowledged > 0 {
                let timed = (r.ok + r.failed).saturating_sub(r.unacknowledged);
                let _ = writeln!(
                    out,
                    "unacknowledged: {} of {}'s ok heartbeats were published at QoS 0, written with nothing to time \
                     them to: they have no latency{}",
                    r.unacknowledged,
                    name(r),
                    if timed > 0 { format!(" (its latency rows are its other {timed})") } else { String::new() }
                );
            }
        }
        for r in rows.iter().filter(|r| !(single && r.name.is_none())) {
            if r.late > 0 {
                let _ = writeln!(
                    out,
                    "late: {} of {}'s {} heartbeats went after their intended time, held back by a busy device (its in-flight window full), a \
                     full pool or a device's session on its idle wait (lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
                    r.late,
                    name(r),
                    r.sent,
                    r.lateness_ms.p50,
                    r.lateness_ms.p99,
                    r.lateness_ms.max
                );
            }
        }
        if !self.cohorts.is_empty() {
            let _ = writeln!(out, "\nby agent version:");
            for c in super::cohorts::rows(self) {
                let _ = writeln!(
                    out,
                    "  {:<20} {:<16} sent {:>9}  ok {:>9}  failed {:>7}  p50 {:>8.2} ms  p99 {:>8.2} ms",
                    c.fleet, c.agent_version, c.sent, c.ok, c.failed, c.p50_ms, c.p99_ms
                );
            }
        }
        for (class, message) in &self.first_errors {
            let _ = writeln!(out, "first {class} error: {message}");
        }
        let t = &self.totals;
        match &t.tls_handshake_ms {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "connections opened: {}; TLS handshake p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    t.connects, h.p50, h.p99, h.max
                );
            }
            None => match &t.session_open_ms {
                Some(o) => {
                    let _ = writeln!(
                        out,
                        "sessions opened: {}; opening (connect to acceptance) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        t.connects, o.p50, o.p99, o.max
                    );
                }
                None => {
                    let _ = writeln!(out, "connections opened: {}", t.connects);
                }
            },
        }
        if let Some(s) = &t.sessions {
            let reopened = if s.reopened + s.reopen_failed > 0 {
                format!(
                    "; reopened by their devices {} ({} reopenings refused or failed, each retried after a doubled delay)",
                    s.reopened, s.reopen_failed
                )
            } else {
                String::new()
            };
            let by = &s.closed_by;
            let reasons: Vec<String> = by
                .disconnect_reasons
                .iter()
                .map(|(code, n)| {
                    let meaning = code
                        .parse()
                        .map_or("", |c| crate::transport::mqtt::meaning(crate::transport::mqtt::MqttVersion::V5, c));
                    format!("{n} {meaning} ({code})")
                })
                .collect();
            let disconnect = if reasons.is_empty() {
                "DISCONNECT".to_string()
            } else {
                format!("DISCONNECT [{}]", reasons.join(", "))
            };
            let causes = [
                (disconnect.as_str(), by.disconnect),
                ("end of stream", by.end_of_stream),
                ("broken", by.broken),
                ("keep-alive unanswered", by.keepalive_missed),
            ];
            let causes: Vec<String> =
                causes.iter().filter(|(_, n)| *n > 0).map(|(what, n)| format!("{what} {n}")).collect();
            let causes = if causes.is_empty() { String::new() } else { format!(" ({})", causes.join(", ")) };
            let offline = if s.ended_offline > 0 {
                format!("; ended by their devices going silent {}", s.ended_offline)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "idle sessions: keep-alives {}, inbound messages {}, closed by the far end {}{causes}{offline}{reopened}",
                s.keepalives, s.inbound, s.closed
            );
        }
        for d in &self.delivery {
            let lost = format!("{} lost", d.lost);
            let lost = if d.lost > 0 { paint.bad(&lost) } else { "none lost".into() };
            let timed = if d.delivered > 0 {
                format!(
                    "; intended time to delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    d.latency_ms.p50, d.latency_ms.p99, d.latency_ms.max
                )
            } else {
                String::new()
            };
            let broke =
                if d.observer_broke { " (the observer's session broke: what it missed may not be lost)" } else { "" };
            let _ = writeln!(
                out,
                "delivery (observed end to end), fleet {}: {} of the {} messages the broker took delivered, {lost}, {} \
                 duplicated{timed}{broke}",
                d.fleet, d.delivered, d.expected, d.duplicates
            );
        }
        let verdict = &self.generator.verdict;
        let verdict = if self.generator.kept_up { paint.good(verdict) } else { paint.warn(verdict) };
        let _ = writeln!(out, "generator: {verdict}");
        if let Some(pool) = &self.generator.pool {
            let _ = writeln!(out, "pool: {}", pool.verdict);
        }
        if let Some(why) = self.no_success() {
            let _ = writeln!(out, "{} {why}", paint.bad("FAILED:"));
        }
        if let Some(f) = &self.totals.freshness {
            let _ = writeln!(
                out,
                "freshness: {} of {} devices stale, {} never succeeded; largest gap p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                f.stale_devices, f.devices, f.never_ok, f.max_gap_ms.p50, f.max_gap_ms.p99, f.max_gap_ms.max
            );
        }
        if let Some(a) = &self.aborted {
            let _ = writeln!(out, "{} at {:.1} s: {} (was {})", paint.bad("ABORTED"), a.at_s, a.expr, a.actual_text);
        }
        if !self.thresholds.is_empty() {
            let line = self.thresholds_line();
            let line = if self.failed_thresholds() == 0 { paint.good(&line) } else { paint.bad(&line) };
            let _ = writeln!(out, "\nthresholds: {line}");
            for t in &self.thresholds {
                let outcome = if t.ok { paint.good(t.outcome()) } else { paint.bad(t.outcome()) };
                let what = if t.abort { format!("abort if {}", t.expr) } else { t.expr.clone() };
                let _ = writeln!(out, "  {outcome}  {what}  (actual {})", t.actual_text);
            }
        }
        out
    }
}
