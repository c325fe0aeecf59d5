//! `fleetstorm serve`: the reference backend from its flags, until a
//! signal stops it.

use std::io::{self, Write};

use super::args::{ServeArgs, usage_error};
use super::error::CliError;
use super::signals::Termination;
use crate::server::{self, Auth, Faults, ServeConfig};

/// Where serve listens for MQTT when `--profile mqtt` (or a scenario's
/// mqtt fleet) asks for it without `--mqtt`: MQTT's port, on loopback.
const DEFAULT_MQTT: ([u8; 4], u16) = ([127, 0, 0, 1], 1883);

/// The profiles serve answers, and the identities it lets in for each;
/// `mqtt_topic` is the mqtt profile's topic template.
fn serve_profiles(
    mut enabled: Vec<crate::wire::ProfileName>,
    identities: &[String],
    mqtt: bool,
    mqtt_topic: &str,
) -> Result<crate::wire::serve::ServeProfiles, CliError> {
    use crate::wire::ProfileName;
    if mqtt && !enabled.contains(&ProfileName::Mqtt) {
        enabled.push(ProfileName::Mqtt);
    }
    if enabled.contains(&ProfileName::Custom) {
        return Err(usage_error(
            "serve",
            "--profile custom: a custom wire is its scenario's: give the scenario (--scenario FILE), or run it \
             against url = \"builtin\", which answers its templates",
        ));
    }
    let others: Vec<ProfileName> = enabled.iter().copied().filter(|p| *p != ProfileName::SagemakerEdge).collect();
    let mut profiles = crate::wire::serve::ServeProfiles::new(others.clone());
    if others.contains(&ProfileName::Mqtt) {
        let wire = crate::wire::mqtt::MqttWire::for_topic(mqtt_topic)
            .map_err(|e| usage_error("serve", &format!("--mqtt-topic: {e}")))?;
        profiles.add_mqtt(std::sync::Arc::new(wire));
    }
    for given in identities {
        let (profile, file) = match given.split_once('=') {
            Some((name, file)) => (super::args::parse_profile(name).map_err(CliError::Usage)?, file),
            None => match others.as_slice() {
                [one] => (*one, given.as_str()),
                _ => {
                    return Err(usage_error(
                        "serve",
                        &format!(
                            "--identities {given}: say whose devices these are (--identities PROFILE=FILE) when \
                             not exactly one --profile is given"
                        ),
                    ));
                }
            },
        };
        if profile == ProfileName::SagemakerEdge {
            return Err(usage_error(
                "serve",
                "--identities: SendHeartbeat devices need none (their names are in the body)",
            ));
        }
        let path = std::path::Path::new(file);
        let ids = crate::identities::Identities::load(path, |name| profile.check_device_name(name))
            .and_then(|ids| profile.check_credentials(&ids).map(|()| ids))
            .map_err(|e| CliError::Usage(format!("--identities: {e}")))?;
        profiles
            .add_identities(profile, std::sync::Arc::new(ids))
            .map_err(|e| CliError::Usage(format!("--identities: {e}")))?;
    }
    Ok(profiles)
}

/// A command-line form of a credential, and whether it was given.
struct Form {
    flag: &'static str,
    given: bool,
}

impl Form {
    fn new(flag: &'static str, given: bool) -> Self {
        Form { flag, given }
    }
}

/// A credential given by its file flag (`FLAG-file FILE`) or its
/// environment variable `env`, which, unlike the flag itself, no other user
/// of the machine sees in the process list. `None` when neither is given
/// (the flag's value, if any, is then the credential). More than one of the
/// three forms, an unreadable or empty file or an empty variable is a
/// usage error naming them; the message never holds the credential.
fn secret(flag: Form, file: Option<&std::path::Path>, env: &str) -> Result<Option<String>, CliError> {
    let from_env = match std::env::var(env) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(CliError::Usage(format!("{env} is not UTF-8 text"))),
    };
    let file_flag = format!("{}-file", flag.flag);
    let forms: Vec<&str> = [
        flag.given.then_some(flag.flag),
        file.is_some().then_some(file_flag.as_str()),
        from_env.is_some().then_some(env),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [first, second, ..] = forms.as_slice() {
        return Err(usage_error("serve", &format!("{first} and {second} are both given: give the credential one way")));
    }
    let (text, source) = match (file, from_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("{file_flag} {}: cannot read it: {e}", path.display())))?;
            (text, format!("{file_flag} {}", path.display()))
        }
        (None, Some(value)) => (value, env.to_string()),
        (None, None) => return Ok(None),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(CliError::Usage(format!("{source} is empty: it must hold the credential")));
    }
    Ok(Some(text.to_string()))
}

pub(super) fn serve_command(args: ServeArgs) -> Result<(), CliError> {
    if args.error_status.is_some() && args.error_rate == 0.0 {
        return Err(usage_error(
            "serve",
            "the argument '--error-status' has no effect without '--error-rate' above 0 (the share of heartbeats \
             answered with that status)",
        ));
    }
    let faults = Faults {
        latency: args.latency,
        error_rate: args.error_rate,
        error_status: args.error_status,
        drop_rate: args.drop_rate,
        workers: args.workers,
        service_time: args.service_time,
        queue_limit: args.queue_limit,
        stall: args.stall,
        ..Faults::default()
    };
    if let Err(e) = faults.check() {
        return Err(CliError::Usage(e.to_string()));
    }
    let admin_token = secret(
        Form::new("--admin-token", args.admin_token.is_some()),
        args.admin_token_file.as_deref(),
        "FLEETSTORM_ADMIN_TOKEN",
    )?
    .or(args.admin_token);
    let bearer_flag = Form::new("--require-bearer", args.require_bearer.is_some());
    let bearer =
        secret(bearer_flag, args.require_bearer_file.as_deref(), "FLEETSTORM_REQUIRE_BEARER")?.or(args.require_bearer);
    let header_flag = Form::new("--require-header", args.require_header.is_some());
    let header = match secret(header_flag, args.require_header_file.as_deref(), "FLEETSTORM_REQUIRE_HEADER")? {
        Some(text) => {
            let source =
                if args.require_header_file.is_some() { "--require-header-file" } else { "FLEETSTORM_REQUIRE_HEADER" };
            Some(super::args::parse_header(&text).map_err(|e| CliError::Usage(format!("{source}: {e}")))?)
        }
        None => args.require_header,
    };
    let auth = match (bearer, header) {
        (Some(_), Some(_)) => {
            return Err(usage_error(
                "serve",
                "a bearer token (--require-bearer, its file or FLEETSTORM_REQUIRE_BEARER) and a header \
                 (--require-header, its file or FLEETSTORM_REQUIRE_HEADER) are both given: heartbeats take one \
                 credential",
            ));
        }
        (Some(token), None) => Some(Auth::Bearer(token)),
        (None, Some((name, value))) => Some(Auth::Header { name, value }),
        (None, None) => None,
    };
    let mut profiles = match &args.scenario {
        Some(path) => {
            let scenario = crate::scenario::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
            crate::run::builtin_profiles(&scenario).map_err(|e| CliError::Usage(format!("--scenario: {e}")))?
        }
        None => serve_profiles(args.profiles, &args.identities, args.mqtt.is_some(), &args.mqtt_topic)?,
    };
    let mqtt = args.mqtt.or_else(|| profiles.speaks_mqtt().then(|| DEFAULT_MQTT.into()));
    if args.sigv4_verify {
        let settings = crate::transport::http::settings::SigV4Settings {
            region: "us-east-1".into(),
            service: crate::wire::aws_shadow::SIGNING_NAME.into(),
            profile: None,
        };
        let signer = crate::transport::http::sigv4::Signer::new(&settings)
            .map_err(|e| CliError::Usage(format!("--sigv4-verify: {e}")))?;
        profiles.set_sigv4(signer);
    }
    let config = ServeConfig {
        profiles: std::sync::Arc::new(profiles),
        addr: args.addr,
        mqtt,
        faults,
        auth,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        max_devices: args.max_devices.unwrap_or_else(server::default_max_devices),
        max_connections: args.max_connections,
        tls: args.tls_cert.map(|cert| server::ServeTls {
            cert,
            key: args.tls_key.unwrap_or_default(),
            client_ca: args.client_ca,
        }),
        control: server::ControlAccess {
            credential: admin_token.map(Auth::Bearer),
            protect_reads: args.protect_reads,
            allow_open: args.allow_open_control,
        },
        ..ServeConfig::default()
    };
    if let Err(e) = config.check_exposure() {
        return Err(CliError::Usage(e.to_string()));
    }
    if let Some(tls) = &config.tls
        && let Err(e) = tls.acceptor()
    {
        return Err(CliError::Usage(e.to_string()));
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let sized = if args.max_devices.is_some() { "" } else { ", sized to a quarter of the available memory" };
    let max_devices = format!("at most {} devices (--max-devices{sized})", config.max_devices);
    // Every connection is a file; take all the descriptors we may.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return Err(CliError::Failed(format!("cannot start the runtime: {e}"))),
    };
    runtime.block_on(async move {
        let mut termination = Termination::install();
        let server = match server::Server::bind(config).await {
            Ok(s) => s,
            Err(e) if e.to_string().starts_with("the MQTT listener") => return Err(CliError::Failed(e.to_string())),
            Err(e) => return Err(CliError::Failed(format!("cannot listen on {}: {e}", args.addr))),
        };
        let shared = server.shared();
        match server.local_addr() {
            Ok(addr) => {
                println!("fleetstorm serve listening on {scheme}://{addr}");
                // stdout's first line is the address alone, for scripts.
                eprintln!("fleetstorm serve: {max_devices}");
            }
            Err(e) => eprintln!("warning: cannot read the bound address: {e}"),
        }
        match server.mqtt_addr() {
            Ok(Some(addr)) => eprintln!("fleetstorm serve listening on mqtt://{addr}"),
            Ok(None) => {}
            Err(e) => eprintln!("warning: cannot read the MQTT listener's address: {e}"),
        }
        let _ = io::stdout().flush();
        server.run(termination.recv()).await;
        println!("{}", shared.stats_json());
        Ok(())
    })
}
