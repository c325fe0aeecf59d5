#!/usr/bin/env python3
"""Reads an HdrHistogram interval log with the HdrHistogram Python package
(`hdrhistogram` on PyPI) and prints, as JSON, the intervals it found,
their counts and their total.

Usage: read_hlog.py FILE.hlog
"""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def main():
    reference = HdrHistogram(1, 3_600_000_000, 3)
    reader = HistogramLogReader(sys.argv[1], reference)
    counts = []
    total = HdrHistogram(1, 3_600_000_000, 3)
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        counts.append(h.get_total_count())
        total.add(h)
    print(json.dumps({
        "intervals": len(counts),
        "counts": counts,
        "total": total.get_total_count(),
        "p50_us": total.get_value_at_percentile(50),
        "start_time_sec": reader.start_time_sec,
    }))


if __name__ == "__main__":
    main()
