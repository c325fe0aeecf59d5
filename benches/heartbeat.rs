//! Hot-path micro-benchmarks for heartbeat bodies: generating and
//! serializing one body, and validating one body.
//!
//! Bodies: the generator's full shape (3 agent metrics, 2 models with 2
//! metrics each; about 1 KB with these names), and the 529-byte reference
//! heartbeat that `../shared/bench/peers.sh` sends (2 agent metrics, 1
//! model with 1 metric). Run with `cargo bench --bench heartbeat`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetstorm::device::{FleetGenerator, MetricSpec, ModelSpec, NameTemplate, Profile, Scratch, Weighted};
use fleetstorm::sagemaker_edge::validate;

fn generator() -> FleetGenerator {
    let model = |name: &str| ModelSpec {
        name: name.into(),
        versions: Weighted::new([("3.1".to_string(), 0.7), ("3.2".to_string(), 0.3)]).unwrap(),
        share: 1.0,
        metrics: vec![
            MetricSpec::new("inference-latency-ms", &format!("model/{name}"), 4.0, 60.0),
            MetricSpec::new("confidence", &format!("model/{name}"), 0.5, 1.0),
        ],
        deployment_results: 1.0,
    };
    let profile = Profile {
        fleet_name: "factory-east".into(),
        agent_versions: Weighted::new([("1.20231.0".to_string(), 0.9), ("1.20240.1".to_string(), 0.1)]).unwrap(),
        agent_metrics: Profile::default_agent_metrics(),
        models: vec![model("defect-detector"), model("ocr-labels")],
    };
    FleetGenerator::new(profile, NameTemplate::parse("cam-{index:05}").unwrap(), 7)
}

/// The body `../shared/bench/peers.sh` generates for the peer tools.
const REFERENCE_BODY: &[u8] = br#"{"AgentVersion":"1.20231.0","DeviceName":"device-000123","DeviceFleetName":"fleet-east","AgentMetrics":[{"Dimension":"agent","MetricName":"CpuUtilization","Timestamp":1764160000.123,"Value":12.5},{"Dimension":"agent","MetricName":"MemoryUtilization","Timestamp":1764160000.123,"Value":48.25}],"Models":[{"ModelName":"resnet50-int8","ModelVersion":"1.0","LatestInference":1764160000.1,"LatestSampleTime":1764159990.0,"ModelMetrics":[{"Dimension":"model","MetricName":"InferenceLatencyMs","Timestamp":1764160000.1,"Value":8.75}]}]}"#;

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
    group.bench_function(format!("validate_full_shape_{}_bytes", sample.len()), |b| {
        b.iter(|| validate(black_box(&sample)).is_ok())
    });
    assert_eq!(REFERENCE_BODY.len(), 529);
    assert!(validate(REFERENCE_BODY).is_ok());
    group.bench_function("validate_reference_529_bytes", |b| b.iter(|| validate(black_box(REFERENCE_BODY)).is_ok()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
