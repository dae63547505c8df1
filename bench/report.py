"""Prints the results table of bench/run.sh: the median of each workload and tool, and the
ratios dbt-activate vs drt.  report.py SAMPLES.tsv ROWS"""

import csv
import statistics
import sys
from collections import defaultdict

samples_path, rows = sys.argv[1], int(sys.argv[2])
samples = defaultdict(list)
with open(samples_path) as f:
    for s in csv.DictReader(f, delimiter="\t"):
        samples[(s["workload"], s["tool"])].append(s)


def median(values):
    numbers = [float(v) for v in values if v not in ("", "?")]
    return statistics.median(numbers) if numbers else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


print(f"\nrows: {rows:,}   (medians; n = number of runs)\n")
header = f"{'workload':<18} {'tool':<13} {'n':>2} {'wall s':>9} {'rows/s':>11} {'peak MB':>8} {'cpu s':>7} {'sent':>10}  extra"
print(header)
print("-" * len(header))
walls = {}
for (workload, tool), group in samples.items():
    wall = median(s["wall_s"] for s in group)
    sent = median(s["rows_sent"] for s in group)
    walls[(workload, tool)] = wall
    rate = sent / wall if sent and wall else None
    extras = sorted({s["extra"] for s in group})
    truly = [s["extra"].split("=")[1] for s in group if s["extra"].startswith("truly_changed=")]
    if truly and sent is not None and float(truly[0]) > 0:
        extras.append(f"sent/truly_changed={sent / float(truly[0]):.3f}")
    print(
        f"{workload:<18} {tool:<13} {len(group):>2} {fmt(wall):>9} {fmt(rate, 0):>11} "
        f"{fmt(median(s['peak_rss_mb'] for s in group), 0):>8} {fmt(median(s['cpu_s'] for s in group)):>7} "
        f"{fmt(sent, 0):>10}  {' '.join(extras)}"
    )
print()
for workload in dict.fromkeys(w for w, _ in samples):
    ours, peer = walls.get((workload, "dbt-activate")), walls.get((workload, "drt"))
    if ours and peer:
        print(f"{workload:<18} drt / dbt-activate wall time: {peer / ours:,.1f}x")
