#!/usr/bin/env bash
# The thread pool with auto() against every fixed worker count in {1,2,4,8,16,32,64}, on a
# CPU-bound workload (96 hashes of 4 MiB) and a sleeping one (200 waits of 20 ms), side by side
# in one run, in rounds as bench/autotune/run.sh runs them (crates/pardo-demo/examples/autotune.rs),
# then auto / best fixed.
# Usage: bench/autotune/library.sh   (ROUNDS=10 by default; writes results-<date>/library-*.json here)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-demo --example autotune --manifest-path "$root/Cargo.toml" >&2
bin="$root/target/release/examples/autotune"
out="$here/results-$(date +%F)"
mkdir -p "$out"
echo "library: $(date -u '+%F %H:%M UTC'), nproc $(nproc), uname -r $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
for w in cpu sleep; do
  args=(-n auto "$bin $w auto")
  for j in 1 2 4 8 16 32 64; do args+=(-n "j$j" "$bin $w $j"); done
  for r in $(seq "${ROUNDS:-10}"); do
    hyperfine -N --runs 1 --export-json "$out/library-$w-round$r.json" "${args[@]}"
  done
  "$bin" "$w" auto 2>&1 | sed 's/^/library /' >> "$out/choices.txt"
done
python3 "$here/ratios.py" "$out"/library-{cpu,sleep}-round*.json | tee "$out/library-ratios.md"
