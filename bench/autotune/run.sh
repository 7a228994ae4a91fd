#!/usr/bin/env bash
# Automatic concurrency against every fixed -j in {1,2,4,8,16,32,64} and GNU parallel's default
# (one job per core), on the four workloads of issue 11, side by side in one hyperfine run each:
#   cpu    — gzip -6 of 24 files of 2 MiB of generated (base64) data;
#   sleep  — 200 × `sleep 0.05`;
#   mixed  — 200 × (gzip of 128 KiB, then `sleep 0.05`);
#   phase  — 200 sleeps, then 24 gzips of 2 MiB (latency-bound jobs, then CPU-bound ones).
# The commands of a workload run in rounds, each command once per round, so that a drift of the
# machine's speed (±10 % within minutes on a shared VM) falls on every command alike. Then prints,
# per workload, automatic's mean over the best fixed -j's mean, and the median over the rounds of
# the same ratio taken within each round (bench/autotune/ratios.py).
# Needs: hyperfine, GNU parallel, gzip, base64, python3.
# Usage: bench/autotune/run.sh   (from anywhere; ROUNDS=5 by default; writes results-<date>/ here)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
P="$root/target/release/pardo"
data=$(mktemp -d /tmp/pardo-autotune.XXXXXX)
trap 'rm -rf "$data"' EXIT
for i in $(seq 24); do head -c 1572864 /dev/urandom | base64 > "$data/big$i"; done
head -c 98304 /dev/urandom | base64 > "$data/small"
out="$here/results-$(date +%F)"
mkdir -p "$out"
{
  echo "date: $(date -u '+%F %H:%M UTC')"
  echo "nproc: $(nproc); uname -r: $(uname -r)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"
# The jobs of each workload: a template and where its inputs come from.
printf '%s\n' "$data"/big* > "$data/cpu.in"
seq 200 | sed 's/^/s/' > "$data/sleep.in"
cp "$data/sleep.in" "$data/mixed.in"
cat "$data/sleep.in" "$data/cpu.in" > "$data/phase.in"
job='case {} in s*) sleep 0.05 ;; *) gzip -6 -c {} > /dev/null ;; esac'
mixed="gzip -6 -c $data/small > /dev/null; sleep 0.05; : {}"
for w in cpu sleep mixed phase; do
  t=$job
  [ "$w" = mixed ] && t=$mixed
  args=(-n auto "$P '$t' :::: $data/$w.in")
  for j in 1 2 4 8 16 32 64; do
    args+=(-n "j$j" "$P -j $j '$t' :::: $data/$w.in")
  done
  args+=(-n gnu-default "parallel '$t' :::: $data/$w.in")
  for r in $(seq "${ROUNDS:-5}"); do
    hyperfine --runs 1 --export-json "$out/$w-round$r.json" "${args[@]}"
  done
  # What automatic chose, in the words of --stats.
  "$P" --stats "$t" :::: "$data/$w.in" 2>&1 >/dev/null | grep 'automatic j:' | sed "s/^/$w: /" >> "$out/choices.txt" || true
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
python3 "$here/ratios.py" "$out"/{cpu,sleep,mixed,phase}-round*.json | tee "$out/ratios.md"
