#!/usr/bin/env bash
# What "see the run" costs: N trivial jobs (`true {}`) at two at a time, plain and with
# `--report --trace --json` (a JSON line per job handed to a writer thread, the same lines
# spooled to a temporary file, the trace and the HTML page drawn from the spool at the end),
# side by side in one hyperfine run, then in interleaved pairs. The files go to a fresh
# directory each run. The ratio of the two is the cost; the target is <= 1.05.
# For CPU time per configuration (what to compare on a shared machine), see cpu.sh.
# Needs: hyperfine.
# Usage: bench/report/run.sh [N]   (from anywhere; writes bench/report/results-<date>-<time>.md)
# RUNS (default 10) runs each in hyperfine, PAIRS (default 10) interleaved pairs.
set -euo pipefail
N=${1:-5000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
TRUE=/usr/bin/true
[ -x "$TRUE" ] || TRUE=$(command -v true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
input="$work/input"
seq "$N" > "$input"
out="$here/results-$(date -u +%F-%H%M).md"
export PATH=/usr/bin:/bin
pardo="$root/target/release/pardo"
plain=("$pardo" -j 2 "$TRUE" {} :::: "$input")
views=("$pardo" -j 2 --report "$work/r.html" --trace "$work/t.json" --json "$work/r.jsonl"
  "$TRUE" {} :::: "$input")
{
  echo "<!-- $(date -u '+%F %T UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "N=$N, RUNS=${RUNS:-10}, PAIRS=${PAIRS:-10}, $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "no git") -->"
} > "$out.head"
hyperfine -N --warmup 1 --runs "${RUNS:-10}" --export-markdown "$out" \
  -n plain "${plain[*]}" \
  -n report-trace-json "${views[*]}"
cat "$out.head" "$out" > "$out.tmp" && mv "$out.tmp" "$out" && rm -f "$out.head"
ls -l "$work"
# hyperfine runs all of one command before the other, so on a shared machine a change of load
# between the two halves shows up as a difference. Interleaved pairs cancel that drift (and
# each pair swaps which goes first, so neither always runs on the other's warm caches): the
# median of the per-pair ratios is the cost.
PAIRS=${PAIRS:-10}
ratios=()
ns() { date +%s%N; }
for i in $(seq "$PAIRS"); do
  if (( i % 2 )); then
    t0=$(ns); "${plain[@]}"; t1=$(ns); "${views[@]}"; t2=$(ns)
    p=$(( t1 - t0 )); v=$(( t2 - t1 ))
  else
    t0=$(ns); "${views[@]}"; t1=$(ns); "${plain[@]}"; t2=$(ns)
    v=$(( t1 - t0 )); p=$(( t2 - t1 ))
  fi
  ratios+=("$(( v * 1000 / p ))")
  echo "pair $i: plain $(( p / 1000000 )) ms, report-trace-json $(( v / 1000000 )) ms"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "interleaved: median ratio report-trace-json / plain over $PAIRS pairs = $(awk -v m="$median" 'BEGIN {printf "%.3f", m/1000}')" | tee -a "$out"
echo "results: $out"
