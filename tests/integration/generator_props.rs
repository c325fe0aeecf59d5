//! The generator over random fleet settings: every body it makes passes the
//! validator, round-trips through the wire types byte for byte, names are
//! unique per device and timestamps never go backwards; model versions
//! switched between heartbeats (as rollouts do) are reported in the next
//! one's `DeploymentResult`, within the time since the previous one.

use std::collections::HashMap;

use fleetstorm::device::{FleetGenerator, MetricSpec, ModelSpec, NameTemplate, Profile, Scratch, Weighted};
use fleetstorm::sagemaker_edge::{self, validate};
use proptest::prelude::*;

fn versions() -> impl Strategy<Value = Weighted> {
    proptest::collection::vec(("[0-9A-Za-z]{1,4}([._ ][0-9a-z]{1,5}){0,3}", 0.0f64..10.0), 1..4)
        .prop_filter_map("distinct names, some weight", |entries| Weighted::new(entries).ok())
}

fn metric(dimension_default: &'static str) -> impl Strategy<Value = MetricSpec> {
    (
        "[a-zA-Z0-9]{4,10}(-{1,2}[a-z0-9]{1,6}){0,2}",
        proptest::option::of("[a-z0-9]{1,8}(-?/[a-z0-9]{1,6}){0,3}"),
        -1.0e6f64..1.0e6,
        0.0f64..1.0e5,
        0.0f64..1.0,
        0u8..7,
    )
        .prop_map(move |(name, dimension, min, span, walk_share, decimals)| MetricSpec {
            name,
            dimension: dimension.unwrap_or_else(|| dimension_default.to_string()),
            min,
            max: min + span,
            walk: span * walk_share,
            decimals,
        })
}

fn distinct_metrics(d: &'static str, max: usize) -> impl Strategy<Value = Vec<MetricSpec>> {
    proptest::collection::vec(metric(d), 0..max).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|m| seen.insert(m.name.clone()));
        v
    })
}

fn model() -> impl Strategy<Value = ModelSpec> {
    (
        "[a-z]{4,10}(-[a-z0-9]{1,4})?",
        versions(),
        0.0f64..=1.0,
        distinct_metrics("model/x", 4),
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
    )
        .prop_map(|(name, versions, share, metrics, deployment_results)| ModelSpec {
            name,
            versions,
            share,
            metrics,
            deployment_results,
        })
}

fn fleet() -> impl Strategy<Value = (FleetGenerator, u64)> {
    (
        "[a-z0-9]{1,10}(-[a-z0-9]{1,5}){0,2}",
        versions(),
        distinct_metrics("agent", 6),
        proptest::collection::vec(model(), 0..4),
        "[a-zA-Z]{1,12}",
        prop_oneof![Just(""), Just("-"), Just("_"), Just("-_"), Just("--")],
        0usize..8,
        1u64..100_000,
        any::<u64>(),
    )
        .prop_map(|(fleet_name, agent_versions, agent_metrics, mut models, prefix, sep, width, devices, seed)| {
            let mut seen = std::collections::HashSet::new();
            models.retain(|m| seen.insert(m.name.clone()));
            let profile = Profile { fleet_name, agent_versions, agent_metrics, models };
            profile.check().unwrap();
            let template = NameTemplate::parse(&format!("{prefix}{sep}{{index:0{width}}}")).unwrap();
            template.check_for(devices).unwrap();
            (FleetGenerator::new(profile, template, seed), devices)
        })
}

const DEVICES_PER_CASE: u64 = 40;
const HEARTBEATS_PER_DEVICE: usize = 5;
const CASES: u32 = 520;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// 520 cases x 40 devices x 5 heartbeats = 104,000 bodies.
    #[test]
    fn generated_bodies_are_valid_and_round_trip(
        (generator, devices) in fleet(),
        clock in proptest::collection::vec(0u64..10_000, HEARTBEATS_PER_DEVICE),
        switches in proptest::collection::vec(any::<u32>(), HEARTBEATS_PER_DEVICE),
    ) {
        let mut scratch = Scratch::default();
        let mut body = Vec::new();
        let mut names: HashMap<String, u64> = HashMap::new();
        // Devices spread over the whole index range, first and last included.
        let step = (devices / DEVICES_PER_CASE).max(1);
        let indices: Vec<u64> = (0..devices).step_by(step as usize).take(DEVICES_PER_CASE as usize - 1)
            .chain([devices - 1]).collect();
        for &index in &indices {
            let mut device = generator.device(index);
            let mut last_ts = 0.0f64;
            let mut last_inference = vec![0.0f64; generator.profile.models.len()];
            let models = &generator.profile.models;
            for (k, (jitter, switch)) in clock.iter().zip(&switches).enumerate() {
                // The clock moves forward by about a second, but sometimes
                // backwards: the device must not follow it back.
                let now = 1_700_000_000_000 + k as u64 * 1_000 + jitter - 5_000;
                // A rollout, one time in three: a model to a version
                // (perhaps the one it runs, which is no change).
                let mut changed = None;
                if switch % 3 == 0 && !models.is_empty() {
                    let m = (switch / 3) as usize % models.len();
                    let v = ((switch / 7) as usize % models[m].versions.len()) as u16;
                    let before = device.model_version(m as u16);
                    device.set_model_version(m as u16, v);
                    if before.is_some_and(|b| b != v) {
                        changed = Some((m, v));
                    }
                }
                body.clear();
                device.write_next(&generator, now, &mut scratch, &mut body);
                if let Err(v) = validate(&body) {
                    return Err(TestCaseError::fail(format!("{v}\n{}", String::from_utf8_lossy(&body))));
                }
                let parsed: sagemaker_edge::SendHeartbeat = serde_json::from_slice(&body).unwrap();
                prop_assert_eq!(serde_json::to_vec(&parsed).unwrap(), body.clone());
                prop_assert_eq!(&parsed.device_fleet_name, &generator.profile.fleet_name);
                let seen = *names.entry(parsed.device_name.clone()).or_insert(index);
                prop_assert_eq!(seen, index, "two devices share the name {}", parsed.device_name);

                // Timestamps: never after `now` and the send time never decreases.
                let previous_ts = last_ts;
                let ts = parsed.agent_metrics.iter().flatten()
                    .chain(parsed.models.iter().flatten().flat_map(|m| m.model_metrics.iter().flatten()))
                    .map(|m| m.timestamp.unwrap().0)
                    .fold(None, |acc: Option<f64>, t| { if let Some(a) = acc { assert_eq!(a, t); } Some(t) });
                if let Some(ts) = ts {
                    prop_assert!(ts * 1000.0 <= now.max((last_ts * 1000.0) as u64) as f64 + 0.5);
                    prop_assert!(ts >= last_ts);
                    last_ts = ts;
                }
                for m in parsed.models.iter().flatten() {
                    let i = generator.profile.models.iter().position(|s| Some(&s.name) == m.model_name.as_ref()).unwrap();
                    let inference = m.latest_inference.unwrap().0;
                    prop_assert!(inference >= last_inference[i]);
                    prop_assert!(m.latest_sample_time.unwrap().0 <= inference);
                    last_inference[i] = inference;
                }

                // A deployment result only for a change, naming the version
                // the body's Models list runs, timed since the previous heartbeat.
                match (&parsed.deployment_result, changed) {
                    (None, Some((m, _))) => prop_assert!(models[m].deployment_results < 1.0, "a change went unreported"),
                    (None, None) => {}
                    (Some(_), None) => prop_assert!(false, "a deployment result without a change"),
                    (Some(r), Some((m, v))) => {
                        prop_assert!(models[m].deployment_results > 0.0);
                        let deployed = r.deployment_models.as_ref().unwrap();
                        prop_assert_eq!(deployed.len(), 1);
                        prop_assert_eq!(deployed[0].model_name.as_ref(), Some(&models[m].name));
                        prop_assert_eq!(deployed[0].model_version.as_deref(), Some(models[m].versions.name(v)));
                        let listed = parsed.models.iter().flatten().find(|x| x.model_name == deployed[0].model_name);
                        prop_assert_eq!(listed.and_then(|x| x.model_version.as_ref()), deployed[0].model_version.as_ref());
                        let (start, end) = (r.deployment_start_time.unwrap().0, r.deployment_end_time.unwrap().0);
                        prop_assert!(start <= end, "{start} > {end}");
                        prop_assert!(start >= previous_ts, "began {start} before the previous heartbeat {previous_ts}");
                        if let Some(sent) = ts {
                            prop_assert!(end <= sent, "ended {end} after the heartbeat {sent}");
                        }
                    }
                }
            }
        }
    }
}
