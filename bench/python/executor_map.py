#!/usr/bin/env python3
"""Python's streaming map, the anchor for pardo's `ThreadPool::map`: ThreadPoolExecutor.map over
the same trivial function as benches/thread_pool.rs, one worker per core. Prints the mean cost
per item in ns (best of three runs of N items) and nothing else on the first word of its output.

Usage: python3 bench/python/executor_map.py [N]
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
MASK = (1 << 64) - 1


def f(x):
    return ((x * 3) & MASK) ^ 7


best = float("inf")
with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
    for _ in range(3):
        t0 = time.perf_counter_ns()
        out = list(ex.map(f, range(N)))
        best = min(best, (time.perf_counter_ns() - t0) / N)
        assert len(out) == N
print(f"{best:.1f} ns/item over {N} items (ThreadPoolExecutor.map, {os.cpu_count()} workers)")
