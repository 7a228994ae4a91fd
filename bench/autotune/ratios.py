#!/usr/bin/env python3
"""Reads hyperfine JSON exports (commands named auto, j1..j64, gnu-default) and prints a Markdown
table per workload: automatic's mean, the best fixed -j and its mean, their ratio, and GNU
parallel's default where it was run.

A workload is one file (`cpu.json`, every run of each command) or several files of one run each
(`cpu-round1.json`, `cpu-round2.json`, …: every command once per round, as run.sh runs them). With
rounds, the table adds the median over the rounds of auto / best fixed taken within each round:
two times measured seconds apart, so a drift of the machine's speed between rounds cancels."""
import json
import os
import re
import statistics
import sys
from collections import defaultdict

groups = defaultdict(list)
for path in sys.argv[1:]:
    name = re.sub(r"-round\d+$", "", os.path.basename(path).removesuffix(".json"))
    with open(path) as f:
        groups[name].append({r["command"]: r["times"] for r in json.load(f)["results"]})


def fmt(times):
    sd = statistics.stdev(times) if len(times) > 1 else 0.0
    return f"{statistics.mean(times):.3f} s ± {sd:.3f}"


print("| workload | rounds | auto | best fixed | auto / best fixed | median of the rounds' ratios "
      "| GNU default | GNU default / auto |")
print("|:---|---:|---:|---:|---:|---:|---:|---:|")
for name, rounds in groups.items():
    times = defaultdict(list)
    for r in rounds:
        for command, t in r.items():
            times[command].extend(t)
    mean = {c: statistics.mean(t) for c, t in times.items()}
    best = min((c for c in times if c.startswith("j")), key=mean.get)
    ratio = mean["auto"] / mean[best]
    per_round = (
        f"{statistics.median(statistics.mean(r['auto']) / statistics.mean(r[best]) for r in rounds):.2f}×"
        if len(rounds) > 1
        else "-"
    )
    gnu = (
        f"{fmt(times['gnu-default'])} | {mean['gnu-default'] / mean['auto']:.2f}×"
        if "gnu-default" in times
        else "- | -"
    )
    print(
        f"| {name} | {len(rounds)} | {fmt(times['auto'])} | -j {best[1:]}: {fmt(times[best])} "
        f"| **{ratio:.2f}×** | {per_round} | {gnu} |"
    )
