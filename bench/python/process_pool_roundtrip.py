#!/usr/bin/env python3
"""Warm process-pool round trip, side by side in one run: Python's
ProcessPoolExecutor(max_workers=2).submit(f, x).result() and pardo's
ProcessPool(workers=2).submit(F, x).wait(), each on a small payload, in µs per task.

Run from the repository root:  python3 bench/python/process_pool_roundtrip.py [N]
It builds and runs `cargo run --release --example process_roundtrip -- N` for pardo's side.
"""
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def mix(args):
    a, b = args
    return (((a << 17) | (a >> 47)) & 0xFFFFFFFFFFFFFFFF) ^ b


def python_round_trip(n):
    with ProcessPoolExecutor(max_workers=2) as ex:
        for i in range(100):  # warm: both workers started and served
            ex.submit(mix, (i, 1)).result()
        t0 = time.perf_counter()
        for i in range(n):
            ex.submit(mix, (i, 7)).result()
        return (time.perf_counter() - t0) * 1e6 / n


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}")
    py = python_round_trip(n)
    print(f"python ProcessPoolExecutor(max_workers=2).submit().result(): {py:.1f} µs/task over {n} tasks")
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "pardo", "--example", "process_roundtrip", "--", str(n)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    print(out)
    rust = float(out.split(":")[1].split("µs")[0])
    print(f"ratio: pardo is {py / rust:.1f}x faster per round trip")


if __name__ == "__main__":
    main()
