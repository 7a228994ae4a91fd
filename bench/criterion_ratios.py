#!/usr/bin/env python3
"""Print the ratios BENCHMARKS.md records, from the criterion results of one `cargo bench` run.

Usage: python3 bench/criterion_ratios.py [target/criterion] [--python]

With --python it also runs bench/python/executor_map.py (Python's ThreadPoolExecutor.map over
the same trivial function) and compares its cost per item with pardo's streaming map.

Each ratio divides two benchmarks measured in the same run (mean point estimates), so machine
speed cancels out. Nothing here is hard-coded but the pairs to compare.
"""
import json
import pathlib
import sys

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
ROOT = pathlib.Path(ARGS[0] if ARGS else "target/criterion")
ITEMS = 1_000_000

# (label, numerator benchmark, denominator benchmark, what the issue asks)
PAIRS = [
    ("map_slice (monitoring on) / rayon par_iter collect",
     "map_1m_trivial/pardo_map_slice", "map_1m_trivial/rayon_par_iter_collect", "<= 1.5"),
    ("streaming map (monitoring on) / rayon par_iter collect",
     "map_1m_trivial/pardo_map", "map_1m_trivial/rayon_par_iter_collect", "(see notes)"),
    ("streaming map (monitoring on) / rayon par_bridge collect",
     "map_1m_trivial/pardo_map", "map_1m_trivial/rayon_par_bridge_collect", "<= 2.0"),
    ("map_slice monitoring on / off",
     "monitoring_1m_trivial/map_slice_on", "monitoring_1m_trivial/map_slice_off", "<= 1.10"),
    ("streaming map monitoring on / off",
     "monitoring_1m_trivial/map_on", "monitoring_1m_trivial/map_off", "<= 1.10"),
    ("submit+wait / rayon spawn+channel",
     "submit_wait_one/pardo_submit_wait", "submit_wait_one/rayon_spawn_channel", "<= 2.0"),
    ("async map_unordered / tokio JoinSet+Semaphore, 1,000 loopback GETs",
     "loopback_get_1000_256_in_flight/pardo_map_unordered",
     "loopback_get_1000_256_in_flight/tokio_joinset_semaphore", "<= 1.1"),
    ("async ordered map / tokio JoinSet+Semaphore, 1,000 loopback GETs",
     "loopback_get_1000_256_in_flight/pardo_map",
     "loopback_get_1000_256_in_flight/tokio_joinset_semaphore", "(ordered)"),
]


def mean_ns(bench: str) -> float:
    est = json.loads((ROOT / bench / "new" / "estimates.json").read_text())
    return est["mean"]["point_estimate"]


def fmt(ns: float) -> str:
    for unit, div in (("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.3g} ns"


print("| comparison | pardo | baseline | ratio | target |")
print("|---|---|---|---|---|")
for label, num, den, target in PAIRS:
    try:
        a, b = mean_ns(num), mean_ns(den)
    except FileNotFoundError as e:
        print(f"| {label} | missing: {e.filename} | | | {target} |")
        continue
    print(f"| {label} | {fmt(a)} | {fmt(b)} | {a / b:.2f}x | {target} |")

if "--python" in sys.argv:
    import subprocess

    here = pathlib.Path(__file__).parent
    out = subprocess.run([sys.executable, str(here / "python" / "executor_map.py")],
                         check=True, capture_output=True, text=True).stdout
    py_ns = float(out.split()[0])
    ours = mean_ns("map_1m_trivial/pardo_map") / ITEMS
    print(f"| streaming map / Python ThreadPoolExecutor.map, per item | {fmt(ours)} | "
          f"{fmt(py_ns)} | {ours / py_ns:.3f}x | (anchor) |")
