//! Hot-path micro-benchmarks for heartbeat bodies: generating and
//! serializing one body, and validating one body.
//!
//! The body is the brief's reference shape: 3 agent metrics, 2 models with
//! 2 metrics each (about 760 bytes). Run with `cargo bench --bench heartbeat`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetstorm::heartbeat::{
    FleetGenerator, MetricSpec, ModelSpec, NameTemplate, Profile, Scratch, Weighted, validate,
};

fn generator() -> FleetGenerator {
    let model = |name: &str| ModelSpec {
        name: name.into(),
        versions: Weighted::new([("3.1".to_string(), 0.7), ("3.2".to_string(), 0.3)]).unwrap(),
        share: 1.0,
        metrics: vec![
            MetricSpec::new("inference-latency-ms", &format!("model/{name}"), 4.0, 60.0),
            MetricSpec::new("confidence", &format!("model/{name}"), 0.5, 1.0),
        ],
    };
    let profile = Profile {
        fleet_name: "factory-east".into(),
        agent_versions: Weighted::new([("1.20231.0".to_string(), 0.9), ("1.20240.1".to_string(), 0.1)]).unwrap(),
        agent_metrics: Profile::default_agent_metrics(),
        models: vec![model("defect-detector"), model("ocr-labels")],
    };
    FleetGenerator::new(profile, NameTemplate::parse("cam-{index:05}").unwrap(), 7)
}

fn bench(c: &mut Criterion) {
    let fleet = generator();
    let mut devices: Vec<_> = (0..1024).map(|i| fleet.device(i)).collect();
    let mut scratch = Scratch::default();
    let mut body = Vec::with_capacity(2048);
    devices[0].write_next(&fleet, 1_700_000_000_000, &mut scratch, &mut body);
    let sample = body.clone();
    assert!(validate(&sample).is_ok());

    let mut group = c.benchmark_group("heartbeat");
    group.throughput(Throughput::Elements(1));
    let mut now = 1_700_000_000_000u64;
    let mut i = 0usize;
    group.bench_function("generate_and_serialize", |b| {
        b.iter(|| {
            now += 1;
            i = (i + 1) & 1023;
            body.clear();
            devices[i].write_next(&fleet, now, &mut scratch, &mut body);
            black_box(body.len())
        })
    });
    group.bench_function(format!("validate_{}_bytes", sample.len()), |b| {
        b.iter(|| validate(black_box(&sample)).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
