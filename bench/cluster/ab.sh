#!/usr/bin/env bash
# Two pardo builds on --cluster, interleaved: each round runs N `true` jobs through two
# `worker -j 1` of build A, then of build B, then locally at -j 2 with build B, on one Redis
# (appendfsync everysec). Interleaving keeps a drifting machine from favouring either build.
# Prints each round's seconds, then the means and local / cluster for each build.
# With B_PIN=1, B's two workers are pinned to CPUs 0 and 1 (`taskset`, their jobs inherit it):
# with one build as A and B, that measures what the scheduler's placement of the two workers
# and their jobs costs.
# Needs: redis-server, bc (and taskset for B_PIN). Usage: bench/cluster/ab.sh A_PARDO B_PARDO
# [ROUNDS] [N]
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-5} N=${4:-3000} B_PIN=${B_PIN:-0}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/cluster/redis.sh
. "$here/redis.sh"
seq "$N" > "$work/in"
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
cluster() {
  local on_a=() on_b=()
  if [ "${2:-0}" = 1 ]; then on_a=(taskset -c 0); on_b=(taskset -c 1); fi
  "${on_a[@]}" "$1" worker "$url" -j 1 --name a 2>/dev/null & local a=$!
  "${on_b[@]}" "$1" worker "$url" -j 1 --name b 2>/dev/null & local b=$!
  sleep 0.3
  secs "$1" --cluster "$url" /usr/bin/true {} :::: "$work/in"
  kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
}
echo "round A-cluster B-cluster local-j2"
for r in $(seq "$ROUNDS"); do
  echo "$r $(cluster "$A") $(cluster "$B" "$B_PIN") $(secs "$B" -j 2 /usr/bin/true {} :::: "$work/in")"
done | tee "$work/rounds"
awk 'NR > 0 { a += $2; b += $3; l += $4; n++ }
  END { printf "mean: A %.3f s, B %.3f s, local %.3f s; local / cluster: A %.2f, B %.2f\n",
        a / n, b / n, l / n, l / a, l / b }' "$work/rounds"
