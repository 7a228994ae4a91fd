#!/usr/bin/env bash
# Two pardo builds' automatic concurrency against the best fixed -j of bench/autotune/run.sh,
# side by side in one hyperfine run per workload (A's auto, B's auto, B at the fixed -j), so a
# change to the controller is judged on the same machine minutes. Prints auto / fixed for each.
# Needs: hyperfine, gzip, base64, python3. Usage: bench/autotune/ab.sh A_PARDO B_PARDO [RUNS]
set -euo pipefail
A=$1 B=$2 RUNS=${3:-5}
data=$(mktemp -d /tmp/pardo-autotune-ab.XXXXXX)
trap 'rm -rf "$data"' EXIT
for i in $(seq 24); do head -c 1572864 /dev/urandom | base64 > "$data/big$i"; done
head -c 98304 /dev/urandom | base64 > "$data/small"
printf '%s\n' "$data"/big* > "$data/cpu.in"
seq 200 | sed 's/^/s/' > "$data/sleep.in"
cat "$data/sleep.in" "$data/cpu.in" > "$data/phase.in"
job='case {} in s*) sleep 0.05 ;; *) gzip -6 -c {} > /dev/null ;; esac'
mixed="gzip -6 -c $data/small > /dev/null; sleep 0.05; : {}"
# The best fixed -j of each workload on 2 cores (bench/autotune/results-*/).
for w in sleep:64 cpu:2 mixed:64 phase:64; do
  name=${w%%:*} j=${w##*:} t=$job in=$data/$name.in
  [ "$name" = mixed ] && { t=$mixed; in=$data/sleep.in; }
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$data/$name.json" \
    -n A "$A '$t' :::: $in" -n B "$B '$t' :::: $in" -n "j$j" "$B -j $j '$t' :::: $in" >/dev/null
  python3 - "$data/$name.json" "$name" "j$j" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
best = r[sys.argv[3]]
print(f"{sys.argv[2]}: " + ", ".join(f"{k} {v:.3f} s ({v / best:.2f}x)" for k, v in r.items()))
PY
done
