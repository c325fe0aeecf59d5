//! The HdrHistogram interval log (`--hlog`): one latency histogram per
//! second of the run, in the standard log format (written by the
//! `hdrhistogram` crate's interval log writer), which HdrHistogram's own
//! tools (HistogramLogProcessor, HdrHistogramVisualizer, the Python `hdrh`
//! package) read. Values (and the max column) are microseconds.

use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::stats;

/// The log's column legend, which the crate's writer leaves out but the
/// Java implementation writes and some readers expect.
const LEGEND: &str = "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// Writes the log of `intervals` (start second, width in seconds, and the
/// compressed latency histogram, `None` for intervals without one) of a
/// run started at `started_at`.
pub fn render(started_at: SystemTime, intervals: &[(u64, u64, Option<Vec<u8>>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment("fleetstorm latency per second (values in microseconds, from each heartbeat's intended time)")
        .with_start_time(started_at)
        .with_base_time(started_at)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| format!("cannot write the log header: {e}"))?;
    out.extend_from_slice(LEGEND.as_bytes());
    // A second writer with no header continues the same log.
    let mut writer = IntervalLogWriterBuilder::new()
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| format!("cannot write the log: {e}"))?;
    for (start, width, encoded) in intervals {
        let Some(encoded) = encoded else { continue };
        let h = stats::decompress_histogram(encoded).map_err(|e| e.to_string())?;
        writer
            .write_histogram(&h, Duration::from_secs(*start), Duration::from_secs(*width), None)
            .map_err(|e| format!("cannot write the interval at {start} s: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn the_log_reads_back_with_the_same_counts() {
        let seconds: Vec<(u64, u64, Option<Vec<u8>>)> = (0..3u64)
            .map(|i| {
                let mut h = stats::new_histogram();
                for v in 0..(10 * (i + 1)) {
                    stats::record(&mut h, 1000 + v);
                }
                (i, 1, Some(stats::compress_histogram(&h)))
            })
            .collect();
        let log = render(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), &seconds).unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert_eq!(text.matches("#[StartTime: 1700000000.000").count(), 1, "{text}");
        assert_eq!(text.matches("\"StartTimestamp\"").count(), 1, "{text}");
        let mut counts = Vec::new();
        for entry in IntervalLogIterator::new(&log) {
            if let Ok(LogEntry::Interval(h)) = entry {
                let decoded: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
                    .deserialize(&mut &base64_decode(h.encoded_histogram())[..])
                    .unwrap();
                counts.push((h.start_timestamp().as_secs(), decoded.len()));
            }
        }
        assert_eq!(counts, vec![(0, 10), (1, 20), (2, 30)]);
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }
}
