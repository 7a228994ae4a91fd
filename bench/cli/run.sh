#!/usr/bin/env bash
# 5,000 trivial jobs (`true {}`) at two at a time: pardo against xargs, GNU parallel,
# rust-parallel and a bare posix_spawn loop, side by side in one hyperfine run.
# Needs: hyperfine, GNU parallel, rust-parallel (cargo install --root /tmp/rp rust-parallel), cc.
# Usage: bench/cli/run.sh [N]   (from the repository root; writes bench/cli/results-<date>.md)
set -euo pipefail
N=${1:-5000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
cc -O2 -o /tmp/spawn_floor "$here/spawn_floor.c"
RP=${RUST_PARALLEL:-/tmp/rp/bin/rust-parallel}
seq "$N" > /tmp/pardo-bench-input
out="$here/results-$(date +%F).md"
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$out" \
  -n floor "/tmp/spawn_floor $N 2" \
  -n pardo "$root/target/release/pardo -j 2 true {} :::: /tmp/pardo-bench-input" \
  -n xargs "xargs -P 2 -n 1 -a /tmp/pardo-bench-input true" \
  -n rust-parallel "$RP -j 2 -i /tmp/pardo-bench-input true" \
  -n gnu-parallel "parallel -j 2 true {} :::: /tmp/pardo-bench-input"
# The runner's own CPU per job: pardo's user+sys minus its children's, over N.
/usr/bin/time -f "%e s wall, %U s user, %S s sys (children included)" \
  "$root/target/release/pardo" -j 2 --stats true {} :::: /tmp/pardo-bench-input
echo "results: $out"
