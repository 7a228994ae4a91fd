#!/usr/bin/env bash
# --cluster against the local runner, and recovery after a worker's kill -9, on one machine:
#   1. N `true` jobs: local `pardo -j 2` vs `pardo --cluster` with two local workers at -j 1
#      each (broker, workers and submitter share the cores), side by side in one hyperfine run,
#      with Redis's default AOF policy (`appendfsync everysec`);
#   2. what one --cluster run of N jobs costs: Redis calls per job (INFO commandstats, the
#      commands run inside scripts included, and the scripts themselves as `evalsha`) and CPU
#      per job of every process (submitter, workers with their jobs, Redis) beside a local run's
#      — figures that do not depend on how busy the machine is — and the share of the cores
#      each run left idle;
#   3. recovery: a worker is killed (kill -9) in the middle of a job; the time until that job
#      starts on the other worker, with the default lease (1 s), R times, with
#      `appendfsync always` (nothing acknowledged is lost when Redis itself dies).
# Needs: hyperfine, redis-server. Usage: bench/cluster/run.sh [N] [R]   (from the repo root)
set -euo pipefail
N=${1:-3000}
R=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
P=$root/target/release/pardo
# shellcheck source=bench/cluster/redis.sh
. "$here/redis.sh"
TRUE=/usr/bin/true
seq "$N" > "$work/input"
"$P" worker "$url" -j 1 --name w1 2>/dev/null & pids+=($!)
"$P" worker "$url" -j 1 --name w2 2>/dev/null & pids+=($!)
echo "## $N true jobs: --cluster (2 workers at -j 1) vs local -j 2 (appendfsync everysec)"
hyperfine -N --warmup 1 --runs "${RUNS:-5}" \
  -n local-j2 "$P -j 2 $TRUE {} :::: $work/input" \
  -n cluster-2x-j1 "$P --cluster $url $TRUE {} :::: $work/input"

echo "## one run of $N true jobs: Redis calls and CPU per job"
# CPU of a process in clock ticks: its own, and with `all` its reaped children's too.
ticks() { awk -v all="${2:-}" '{ print $14 + $15 + (all ? $16 + $17 : 0) }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
per_job_ms() { echo "scale=3; $1 * 1000 / $hz / $N" | bc; }
# The share of the machine's cores left idle (idle + iowait over all, from /proc/stat).
stat_now() { awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
idle_share() { echo "$1 $2" | awk '{ printf "%.1f %%", 100 * ($3 - $1) / ($4 - $2) }'; }
redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
s0=$(stat_now)
w0=$(( $(ticks "${pids[0]}" all) + $(ticks "${pids[1]}" all) )); r0=$(ticks "$rpid")
/usr/bin/time -f '%U %S' -o "$work/sub.time" "$P" --cluster "$url" $TRUE {} :::: "$work/input" \
  >/dev/null 2>&1
w1=$(( $(ticks "${pids[0]}" all) + $(ticks "${pids[1]}" all) )); r1=$(ticks "$rpid")
s1=$(stat_now)
redis-cli -p "$port" INFO commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$N" '
  /^cmdstat_/ { sub("cmdstat_", "", $1); t += $3; if ($3 / n >= 0.01) printf "  %-12s %6.2f calls/job\n", $1, $3 / n }
  END { printf "  %-12s %6.2f calls/job\n", "all", t / n }' | sort
# Requests read from clients: a pipeline or a script call is one, so this counts round trips.
redis-cli -p "$port" INFO stats | tr -d '\r' | awk -F: -v n="$N" '
  /^total_reads_processed/ { printf "  round trips  %6.2f per job (total_reads_processed)\n", $2 / n }'
sub=$(awk -v hz="$hz" '{ print int(($1 + $2) * hz + 0.5) }' "$work/sub.time")
echo "  CPU per job, --cluster: submitter $(per_job_ms "$sub") ms, workers and jobs" \
  "$(per_job_ms $((w1 - w0))) ms, redis $(per_job_ms $((r1 - r0))) ms," \
  "all $(per_job_ms $((sub + w1 - w0 + r1 - r0))) ms"
s2=$(stat_now)
/usr/bin/time -f '%U %S' -o "$work/local.time" "$P" -j 2 $TRUE {} :::: "$work/input" >/dev/null
s3=$(stat_now)
echo "  cores idle during the run: --cluster $(idle_share "$s0" "$s1"), local -j 2" \
  "$(idle_share "$s2" "$s3")"
loc=$(awk -v hz="$hz" '{ print int(($1 + $2) * hz + 0.5) }' "$work/local.time")
echo "  CPU per job, local -j 2 (runner and jobs): $(per_job_ms "$loc") ms"
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()

echo "## recovery after kill -9 of a worker mid-job (lease 1 s, default; appendfsync always)"
redis-cli -p "$port" CONFIG SET appendfsync always >/dev/null
for r in $(seq "$R"); do
  d=$work/rec$r; mkdir -p "$d"
  "$P" worker "$url" -j 1 --name a$r 2>/dev/null & a=$!
  "$P" --cluster "$url" \
    "if mkdir $d/first 2>/dev/null; then touch $d/running; sleep 600; fi; date +%s.%N > $d/second; : {}" \
    ::: x >/dev/null 2>&1 & s=$!
  until [ -e "$d/running" ]; do sleep 0.01; done
  "$P" worker "$url" -j 1 --name b$r 2>/dev/null & b=$!
  sleep 0.3 # b is up and polling before a dies
  t0=$(date +%s.%N); kill -9 "$a"
  wait "$s"
  echo "run $r: job running elsewhere $(echo "$(cat "$d/second") - $t0" | bc) s after kill -9"
  kill "$b"; wait "$b" 2>/dev/null || true
done
