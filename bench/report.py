"""Prints the results table of bench/run.sh: the median of each workload and tool, and the
ratios dbt-activate vs drt; then dbt-activate's engine overhead per workload (workload 6).
report.py SAMPLES.tsv ROWS [ENGINE.tsv]"""

import csv
import statistics
import sys
from collections import defaultdict

samples_path, rows = sys.argv[1], int(sys.argv[2])
split_path = sys.argv[3] if len(sys.argv) > 3 else None
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

if split_path:
    # Workload 6: everything but warehouse and destination time, against 1 s + 0.2 s per
    # million rows read. The wall time includes the process start, loading the project,
    # preflight and writing the results; warehouse/destination/engine are summed over syncs.
    splits = defaultdict(list)
    with open(split_path) as f:
        for s in csv.DictReader(f, delimiter="\t"):
            splits[s["workload"]].append(s)
    if splits:
        print("\nengine overhead (workload 6): wall - warehouse - destination, medians\n")
        header = (f"{'workload':<18} {'n':>2} {'wall s':>7} {'rows read':>10} {'warehouse s':>11} "
                  f"{'dest s':>7} {'engine s':>8} {'overhead s':>10} {'target s':>8}  met")
        print(header)
        print("-" * len(header))
        for workload, group in splits.items():
            m = {k: median(s[k] for s in group)
                 for k in ("wall_s", "rows_read", "warehouse_s", "destination_s", "engine_s")}
            overheads = [float(s["wall_s"]) - float(s["warehouse_s"]) - float(s["destination_s"])
                         for s in group]
            overhead = statistics.median(overheads)
            target = 1.0 + 0.2 * m["rows_read"] / 1e6
            print(f"{workload:<18} {len(group):>2} {fmt(m['wall_s']):>7} {fmt(m['rows_read'], 0):>10} "
                  f"{fmt(m['warehouse_s']):>11} {fmt(m['destination_s']):>7} {fmt(m['engine_s']):>8} "
                  f"{fmt(overhead):>10} {fmt(target):>8}  {'yes' if overhead <= target else 'NO'}")
