#!/usr/bin/env bash
# N trivial jobs (`true {}`) at two at a time: pardo against xargs, GNU parallel, rust-parallel
# and two C floors, side by side in one hyperfine run:
#   spawn floor   — posix_spawn and wait, nothing else (bench/cli/spawn_floor.c);
#   capture floor — posix_spawn with stdout/stderr pipes, poll to EOF, wait4 (capture_floor.c):
#                   the least a runner that keeps each job's output and rusage must do.
# Every command runs with a short PATH and the program given by absolute path, so that neither
# the floors nor the runners spend their time searching a long PATH (which hides the runner's
# own cost); `pardo-path` repeats pardo with the program looked up on that PATH.
# Needs: hyperfine, GNU parallel, cc; rust-parallel is added when installed
# (cargo install --root /tmp/rp rust-parallel, or RUST_PARALLEL=path).
# Usage: bench/cli/run.sh [N]   (from the repository root; writes bench/cli/results-<date>.md)
set -euo pipefail
N=${1:-3000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
cc -O2 -o /tmp/spawn_floor "$here/spawn_floor.c"
cc -O2 -o /tmp/capture_floor "$here/capture_floor.c"
RP=${RUST_PARALLEL:-/tmp/rp/bin/rust-parallel}
rp=()
[ -x "$RP" ] && rp=(-n rust-parallel "$RP -j 2 -i /tmp/pardo-bench-input $TRUE")
TRUE=$(command -v true | head -1)
[ -x /usr/bin/true ] && TRUE=/usr/bin/true
seq "$N" > /tmp/pardo-bench-input
out="$here/results-$(date +%F).md"
export PATH=/usr/bin:/bin
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$out" \
  -n spawn-floor "/tmp/spawn_floor $N 2 $TRUE" \
  -n capture-floor "/tmp/capture_floor $N 2 $TRUE" \
  -n pardo "$root/target/release/pardo -j 2 $TRUE {} :::: /tmp/pardo-bench-input" \
  -n pardo-path "$root/target/release/pardo -j 2 true {} :::: /tmp/pardo-bench-input" \
  -n xargs "xargs -P 2 -n 1 -a /tmp/pardo-bench-input $TRUE" \
  "${rp[@]}" \
  -n gnu-parallel "parallel -j 2 $TRUE {} :::: /tmp/pardo-bench-input"
# Context switches per job (the runner, its guard and its jobs, all reaped: getrusage of the
# children). Voluntary ones are the runner's waits and hardly depend on the machine's load;
# involuntary ones do.
for tool in spawn-floor capture-floor pardo xargs; do
  case $tool in
    spawn-floor) cmd=(/tmp/spawn_floor "$N" 2 "$TRUE") ;;
    capture-floor) cmd=(/tmp/capture_floor "$N" 2 "$TRUE") ;;
    pardo) cmd=("$root/target/release/pardo" -j 2 "$TRUE" {} :::: /tmp/pardo-bench-input) ;;
    xargs) cmd=(xargs -P 2 -n 1 -a /tmp/pardo-bench-input "$TRUE") ;;
  esac
  /usr/bin/time -f "%e %U %S %w %c" -o /tmp/pardo-bench-time "${cmd[@]}"
  read -r e u s w c < /tmp/pardo-bench-time
  awk -v t="$tool" -v n="$N" -v e="$e" -v u="$u" -v s="$s" -v w="$w" -v c="$c" 'BEGIN {
    printf "%-14s %6.2f voluntary + %5.2f involuntary context switches per job; %.2f s wall, %.2f s user, %.2f s sys\n",
      t, w / n, c / n, e, u, s }'
done
echo "results: $out"
