#!/usr/bin/env bash
# CPU time, not wall time, of what "see the run" adds: N trivial jobs (`true {}`) at -j 2 with
# no view, with each of --json, --trace and --report alone, and with all three, in ROUNDS
# interleaved rounds (so a change of load hits every configuration alike). For each run it
# prints the runner's own CPU (`--stats`: getrusage(RUSAGE_SELF), drawing at the end
# included) and, from /usr/bin/time, user and system CPU of the whole process tree and the
# wall time. CPU time is what to compare on a shared machine; the wall-clock target is
# bench/report/run.sh's. Needs: GNU time (/usr/bin/time).
# Usage: bench/report/cpu.sh [N] [ROUNDS]   (from anywhere; builds the release binary first,
# or measures PARDO=/path/to/pardo as it is, e.g. another worktree's build for a before/after)
set -euo pipefail
N=${1:-5000}
ROUNDS=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -z "${PARDO:-}" ]; then
  cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
fi
pardo=${PARDO:-$root/target/release/pardo}
TRUE=/usr/bin/true
[ -x "$TRUE" ] || TRUE=$(command -v true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq "$N" > "$work/input"
configs=(plain json trace report all)
flags() {
  case $1 in
    plain) ;;
    json) echo "--json $work/r.jsonl" ;;
    trace) echo "--trace $work/t.json" ;;
    report) echo "--report $work/r.html" ;;
    all) echo "--report $work/r.html --trace $work/t.json --json $work/r.jsonl" ;;
  esac
}
echo "# $(date -u '+%F %T UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), N=$N, $pardo"
printf '%-7s %5s %14s %10s %10s %8s\n' config round "runner/job" "tree user s" "tree sys s" "wall s"
for round in $(seq "$ROUNDS"); do
  for c in "${configs[@]}"; do
    # shellcheck disable=SC2046
    /usr/bin/time -o "$work/time" -f '%U %S %e' \
      "$pardo" --stats -j 2 $(flags "$c") "$TRUE" {} :::: "$work/input" 2> "$work/stats"
    per_job=$(sed -n 's/.*the runner itself used .* CPU, \(.*\) per job.*/\1/p' "$work/stats")
    read -r user sys wall < "$work/time"
    printf '%-7s %5s %14s %10s %10s %8s\n' "$c" "$round" "$per_job" "$user" "$sys" "$wall"
  done
done
