//! Loading 1,000,000 device identities: how long, and how much memory
//! (`cargo bench --bench identities`; figures in BENCHMARKS.md).
//!
//! Writes a CSV and a JSON Lines file of N devices (a 14-character name and
//! a 20-character token each) into a temporary directory, loads each three
//! times, and prints the best load time, the arena's size and the growth
//! of the process's resident memory over the load. `IDENTITIES` sets N
//! (default 1,000,000).

use std::io::Write;
use std::time::Instant;

use fleetstorm::identities::Identities;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // but runs it too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize =
        std::env::var("IDENTITIES").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 1000 } else { 1_000_000 });
    let dir = std::env::temp_dir().join(format!("fleetstorm-identities-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("devices.csv");
    let jsonl = dir.join("devices.jsonl");
    {
        let mut c = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        let mut j = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        writeln!(c, "name,token").unwrap();
        for i in 0..n {
            let token = format!("{:020x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            writeln!(c, "device-{i:07},{token}").unwrap();
            writeln!(j, "{{\"name\":\"device-{i:07}\",\"token\":\"{token}\"}}").unwrap();
        }
    }
    for path in [&csv, &jsonl] {
        let size = std::fs::metadata(path).unwrap().len();
        let mut best = f64::MAX;
        let mut shown = String::new();
        // The first load's growth: later ones reuse what the first freed.
        let mut first_growth = None;
        for _ in 0..3 {
            let before = rss_bytes();
            let started = Instant::now();
            let ids = Identities::load(path, |_| Ok(())).expect("loads");
            let took = started.elapsed().as_secs_f64();
            let grown = *first_growth.get_or_insert(rss_bytes().saturating_sub(before));
            assert_eq!(ids.len(), n);
            if took < best {
                best = took;
                shown = format!(
                    "{:>9} devices from {} ({:.1} MB): {:.3} s, {:.0} ns per device; arena {:.1} MB ({:.1} B per device); RSS grew {:.1} MB (first load)",
                    n,
                    path.file_name().unwrap().to_string_lossy(),
                    size as f64 / 1e6,
                    took,
                    took * 1e9 / n as f64,
                    ids.heap_bytes() as f64 / 1e6,
                    ids.heap_bytes() as f64 / n as f64,
                    grown as f64 / 1e6,
                );
            }
        }
        println!("{shown}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
