# Sourced by the cluster benchmarks: a Redis of their own on a free loopback port, in a
# temporary directory, AOF on with `appendfsync everysec`, stopped (with every PID the script
# adds to `pids`) and removed when the script exits. Sets `work`, `port`, `rpid`, `pids`, `url`.
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --dir "$work" >/dev/null &
rpid=$!
pids=()
cleanup() { kill "${pids[@]}" "$rpid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
url=redis://127.0.0.1:$port/0
