//! The run's target, opened before the engine starts and closed after it:
//! a remote target's address resolved, the machine's resources checked
//! toward it (once, before anything starts), the built-in backend started
//! (with its MQTT listener for an MQTT run, whose sessions go there), and
//! the transport built from the target's settings. The engine is
//! handed the transport ([`OpenTransport`]) and knows nothing of URLs;
//! this is the one place a target's scheme chooses its transport.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::error::RunError;
use super::resources::{ConnectionBudget, check_resources};
use crate::report::RunFacts;
use crate::scenario::{Scenario, TargetUrl};
use crate::server::{self, RunningServer, ServeConfig};
use crate::shard::Shard;
use crate::transport::http::settings::HttpVersion;
use crate::transport::mqtt::observe::Observer;
use crate::transport::mqtt::{Mqtt, MqttEndpoint};
use crate::transport::settings::ConnectionMode;
use crate::transport::{Endpoint, EndpointOptions, Http, Protocol, Transport};

/// The transport a target's scheme chose.
pub enum OpenTransport {
    Http(Arc<Http>),
    Mqtt(Arc<Mqtt>),
}

/// A target ready for the run's fleets.
pub struct OpenTarget {
    /// The transport every fleet's devices use.
    pub transport: OpenTransport,
    /// The target as the report names it: its URL, or the built-in
    /// backend's address.
    pub described: String,
    /// What the machine gives the run toward it (its source addresses).
    pub budget: ConnectionBudget,
    /// The built-in backend, when the target is it.
    builtin: Option<RunningServer>,
    /// The observers of fleets observed end to end, by fleet index.
    observers: Vec<(usize, Observer)>,
}

impl OpenTarget {
    /// Opens `scenario`'s target for a run (of `shard`, if given).
    pub async fn open(scenario: &Scenario, shard: Option<Shard>) -> Result<OpenTarget, RunError> {
        let t = &scenario.target;
        // Where it is first (no side effect), so that the resources are
        // checked toward its address before a backend is started.
        let remote = match &t.url {
            TargetUrl::Builtin => None,
            TargetUrl::Http { host, port, .. } | TargetUrl::Mqtt { host, port, .. } => {
                Some((resolve(host, *port).await?, host.clone()))
            }
        };
        let toward = remote.as_ref().map_or(IpAddr::from([127, 0, 0, 1]), |(addr, _)| addr.ip());
        let budget = check_resources(scenario, shard, Some(toward))?;
        let mqtt = scenario.protocol() == Protocol::Mqtt;
        let (addr, host, builtin) = match remote {
            Some((addr, host)) => (addr, host, None),
            None => {
                let running = start_builtin(scenario).await?;
                // An MQTT run's sessions go to the built-in MQTT listener.
                let addr = match (mqtt, running.mqtt_addr) {
                    (true, Some(addr)) => addr,
                    _ => running.addr,
                };
                (addr, "127.0.0.1".to_string(), Some(running))
            }
        };
        let described = match &t.url {
            TargetUrl::Builtin if mqtt => format!("builtin (mqtt://{addr})"),
            TargetUrl::Builtin => format!("builtin (http://{addr})"),
            url => url.to_string(),
        };
        if mqtt {
            // mqtts://: TLS with the target's [target.tls], no ALPN (a
            // broker on 8883 asks for none).
            let tls = if t.url.tls() { Some(crate::transport::tls::client(&t.tls, &host, Vec::new())?) } else { None };
            let endpoint = MqttEndpoint::new(addr, t.timeout, t.mqtt.clone(), &budget.sources.addresses).with_tls(tls);
            let mqtt = Mqtt::new(endpoint);
            let observers = start_observers(scenario, &mqtt).await?;
            let transport = OpenTransport::Mqtt(Arc::new(mqtt));
            return Ok(OpenTarget { transport, described, budget, builtin, observers });
        }
        let endpoint = Endpoint::new(
            addr,
            &host,
            &t.path,
            t.headers.iter().map(|h| (h.name.clone(), h.value.clone())),
            t.timeout,
            EndpointOptions { sources: budget.sources.addresses.clone(), ..endpoint_options(t, &host)? },
        )?;
        let transport = OpenTransport::Http(Arc::new(Http::new(endpoint)));
        Ok(OpenTarget { transport, described, budget, builtin, observers: Vec::new() })
    }

    /// What the observers saw of their fleets' messages end to end, once
    /// the run is over: each waits for the messages its broker took (from
    /// the run's counts) or until none came for the target's timeout.
    /// Only the measured part counts (after `warmup`).
    pub async fn observed(
        &mut self,
        output: &crate::engine::RunOutput,
        warmup: Option<Duration>,
    ) -> Vec<(usize, crate::stats::Delivery)> {
        let from = output.started_at + warmup.unwrap_or_default();
        let from_ns = from.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let patience = self.timeout().max(Duration::from_secs(1));
        let mut seen = Vec::new();
        for (fleet, observer) in self.observers.drain(..) {
            let c = output.fleets.get(fleet).map(|r| &r.counters);
            // `ok` counts QoS 0 messages written (`unacknowledged`) as well.
            let expected = c.map_or(0, |c| c.ok());
            seen.push((fleet, observer.finish(expected, from_ns, patience).await));
        }
        seen
    }

    fn timeout(&self) -> Duration {
        match &self.transport {
            OpenTransport::Mqtt(m) => m.timeout(),
            OpenTransport::Http(_) => Duration::ZERO,
        }
    }

    /// Closes the target after the run, with what it tells the report:
    /// how it is named, the built-in backend's own counts (stopped, unless
    /// the run was abandoned: no waiting for its connections to close
    /// then), the first message of each kind of failure, the source
    /// addresses fleetstorm chose.
    pub async fn close(self, abandoned: bool) -> RunFacts {
        let backend = match self.builtin {
            // MQTT's counts are read once its sessions have ended: a QoS 0
            // message fleetstorm counted as sent (written) may still be on
            // its way when the run ends, and its session reads it before
            // it sees its client close.
            Some(server) if !abandoned && matches!(self.transport, OpenTransport::Mqtt(_)) => {
                let shared = server.shared.clone();
                server.shutdown().await;
                Some(shared.stats_json())
            }
            Some(server) => {
                let stats = server.shared.stats_json();
                if !abandoned {
                    server.shutdown().await;
                }
                Some(stats)
            }
            None => None,
        };
        let sources = self.budget.sources;
        RunFacts {
            target: self.described,
            backend,
            first_errors: match &self.transport {
                OpenTransport::Http(t) => t.first_errors(),
                OpenTransport::Mqtt(t) => t.first_errors(),
            },
            spread_sources: sources.spread.then_some(sources.addresses),
            ..RunFacts::default()
        }
    }
}

/// Opens an observer for each fleet that asks for one (`observe`),
/// subscribed before the run's first message, logged in as the fleet's
/// first listed device (its identities file's username and password).
async fn start_observers(scenario: &Scenario, mqtt: &Mqtt) -> Result<Vec<(usize, Observer)>, RunError> {
    let mut observers = Vec::new();
    for (i, f) in scenario.fleets.iter().enumerate() {
        let Some(wire) = f.mqtt.as_ref().filter(|w| w.observe) else { continue };
        let login = f.device_name.identities().map_or((None, None), |ids| {
            let column = |name: &str| ids.column(name).filter(|_| !ids.is_empty()).map(|at| ids.get(0, at).to_string());
            (column(crate::wire::mqtt::USERNAME), column(crate::wire::mqtt::PASSWORD))
        });
        let observer = Observer::start(mqtt.endpoint(), f.name(), &wire.observe_filter(), login)
            .await
            .map_err(RunError::Observer)?;
        observers.push((i, observer));
    }
    Ok(observers)
}

/// What the built-in backend answers for a scenario: each fleet's device
/// profile, letting in the devices of its identities file (the same rows
/// the fleet sends from), or those that follow the profile's rule.
pub fn builtin_profiles(scenario: &Scenario) -> Result<crate::wire::serve::ServeProfiles, RunError> {
    use crate::wire::ProfileName;
    let mut profiles = crate::wire::serve::ServeProfiles::new(Vec::new());
    // Shadow requests' signatures are checked with the run's own
    // credentials.
    if scenario.fleets.iter().any(|f| f.profile == ProfileName::AwsIotShadow)
        && let Some(settings) = &scenario.target.sigv4
    {
        profiles.set_sigv4(crate::transport::http::sigv4::Signer::new(settings)?);
    }
    for f in scenario.fleets.iter().filter(|f| f.profile != ProfileName::SagemakerEdge) {
        if f.profile == ProfileName::Mqtt {
            // Its messages are held to the fleet's own topic.
            profiles.add_mqtt(f.mqtt.clone().unwrap_or_default());
        }
        if let Some(custom) = &f.custom {
            profiles.add_custom(custom.clone());
            if let Some(ids) = f.device_name.identities() {
                let _ = profiles.add_identities(ProfileName::Custom, ids.clone());
            }
            continue;
        }
        match f.device_name.identities() {
            // The scenario checked the file has the profile's columns.
            Some(ids) => {
                let _ = profiles.add_identities(f.profile, ids.clone());
            }
            None => profiles.enable(f.profile),
        }
    }
    Ok(profiles)
}

/// The transport options a target asks for: TLS (its files read now),
/// SigV4 (its credentials found now), HTTP version, source addresses.
pub fn endpoint_options(t: &crate::scenario::Target, host: &str) -> Result<EndpointOptions, RunError> {
    let tls = match &t.url {
        TargetUrl::Http { tls: true, .. } => Some(crate::transport::tls::client(&t.tls, host, t.http.alpn())?),
        _ => None,
    };
    let signer = match &t.sigv4 {
        Some(s) => Some(crate::transport::Signer::new(s)?),
        None => None,
    };
    Ok(EndpointOptions {
        keep_alive: t.connections != ConnectionMode::NewPerRequest,
        http2: t.http == HttpVersion::Http2,
        tls,
        signer,
        sources: t.source_addresses.clone(),
    })
}

/// The first address `host` resolves to.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, RunError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| RunError::Resolve { host: host.to_string(), source })?
        .next()
        .ok_or_else(|| RunError::NoAddress { host: host.to_string() })
}

/// Starts the built-in backend on a loopback port, answering the
/// scenario's device profiles; with its MQTT listener on another when
/// the run speaks MQTT.
async fn start_builtin(scenario: &Scenario) -> Result<RunningServer, RunError> {
    // Keep-alive must outlast the longest heartbeat period, or devices
    // would race the server's idle close.
    let max_interval = scenario.fleets.iter().map(|f| f.schedule.interval).max().unwrap_or_default();
    let keep = (max_interval * 2 + Duration::from_secs(5)).max(Duration::from_secs(75));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ServeConfig {
        addr: loopback,
        header_timeout: keep,
        idle_timeout: keep,
        profiles: Arc::new(builtin_profiles(scenario)?),
        mqtt: (scenario.protocol() == Protocol::Mqtt).then_some(loopback),
        ..ServeConfig::default()
    };
    server::spawn(config).await.map_err(RunError::Builtin)
}
