#!/usr/bin/env python3
"""Reads hyperfine JSON exports (one per workload, commands named auto, j1..j64, gnu-default)
and prints a Markdown table: automatic's mean, the best fixed -j and its mean, their ratio, and
GNU parallel's default where it was run."""
import json
import os
import sys

print("| workload | auto | best fixed | auto / best fixed | GNU default | GNU default / auto |")
print("|:---|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    with open(path) as f:
        results = {r["command"]: r for r in json.load(f)["results"]}
    name = os.path.basename(path).removesuffix(".json")
    auto = results["auto"]
    fixed = [r for c, r in results.items() if c.startswith("j")]
    best = min(fixed, key=lambda r: r["mean"])
    fmt = lambda r: f"{r['mean']:.3f} s ± {r['stddev'] or 0:.3f}"
    gnu = results.get("gnu-default")
    print(
        f"| {name} | {fmt(auto)} | -j {best['command'][1:]}: {fmt(best)} "
        f"| **{auto['mean'] / best['mean']:.2f}×** "
        f"| {fmt(gnu) if gnu else '-'} | {gnu['mean'] / auto['mean']:.2f}× |"
        if gnu
        else f"| {name} | {fmt(auto)} | -j {best['command'][1:]}: {fmt(best)} "
        f"| **{auto['mean'] / best['mean']:.2f}×** | - | - |"
    )
