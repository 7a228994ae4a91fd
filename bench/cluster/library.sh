#!/usr/bin/env bash
# Library tasks on a cluster pool against Celery, on one machine and one Redis, in one run:
#   N no-op task_fn! tasks through pardo::cluster::ClusterPool (map_task, one task and one
#   record per input) with 1, 2 and 4 serving workers (the example binary `cluster_pool serve`,
#   one slot each); then CN no-op Celery tasks submitted one by one (.delay(), results
#   gathered) with a prefork worker of concurrency 1, 2 and 4. Redis: AOF on, appendfsync
#   everysec (Celery's broker and backend on db 1 and 2 of the same server).
# Each line is the client's own figure (first submit to last result, in-process); hyperfine
# gives the whole command's wall time too (process start and connect included).
# Needs: hyperfine, redis-server, python3 (a venv with celery and redis is made under
# target/bench-venv the first time). Usage: bench/cluster/library.sh [N] [CN] [RUNS]
set -euo pipefail
N=${1:-100000}
CN=${2:-3000}
RUNS=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release -p pardo --features cluster --example cluster_pool \
  --manifest-path "$root/Cargo.toml" >&2
B=$root/target/release/examples/cluster_pool
venv=$root/target/bench-venv
if ! "$venv/bin/python" -c "import celery, redis, packaging" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet celery redis packaging >&2
fi
# shellcheck source=bench/cluster/redis.sh
. "$here/redis.sh"
echo "# $(date -u +%F\ %H:%M) UTC, nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# redis $(redis-server --version | grep -o 'v=[0-9.]*'), appendonly yes, appendfsync everysec"
echo "# celery $("$venv/bin/celery" --version | head -1)"

stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }

for w in 1 2 4; do
  for i in $(seq "$w"); do "$B" serve "$url" 1 2>/dev/null & pids+=($!); done
  "$B" noop "$url" 1000 >/dev/null # every worker is up and has read once
  echo "## pardo ClusterPool, $N no-op tasks, $w serving worker(s) x 1 slot"
  for r in $(seq "$RUNS"); do "$B" noop "$url" "$N" | tail -1; done
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/pardo-$w.json" \
    -n "pardo-$w" "$B noop $url $N" >&2
  python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['results'][0]['mean']; print(f'hyperfine: mean {m:.3f} s = {int(sys.argv[2])/m:.0f} tasks/s end to end')" \
    "$work/pardo-$w.json" "$N"
  stop_all
done

export CELERY_REDIS=redis://127.0.0.1:$port
for w in 1 2 4; do
  (cd "$here" && exec "$venv/bin/celery" -A celery_noop worker --pool=prefork -c "$w" \
     --loglevel=WARNING >/dev/null 2>&1) & pids+=($!)
  echo "## Celery, $CN no-op tasks one by one (.delay), prefork -c $w"
  for r in $(seq "$RUNS"); do (cd "$here" && "$venv/bin/python" celery_noop.py "$CN"); done
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/celery-$w.json" \
    -n "celery-$w" "$venv/bin/python $here/celery_noop.py $CN" >&2
  python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['results'][0]['mean']; print(f'hyperfine: mean {m:.3f} s = {int(sys.argv[2])/m:.0f} tasks/s end to end')" \
    "$work/celery-$w.json" "$CN"
  stop_all
done
