#!/usr/bin/env bash
# `--pipe` and `--pipepart` counting lines (`wc -l` per 1 MB block) of a ~2 GB file of generated
# lines of varied length: pardo against GNU parallel, and against the machine's limits (`wc -l` of
# the whole file, `cat FILE > /dev/null`), side by side in one hyperfine run. Before timing, every
# command's per-block counts are summed and checked against the generator's line count.
# Needs: hyperfine, GNU parallel, cc, python3, and SIZE bytes free (twice over is comfortable)
# under $PIPE_BENCH_DIR (default /tmp/pardo-bench-pipe). The file is made once and reused.
# Usage: bench/pipe/run.sh [SIZE]   (from anywhere; RUNS=n for fewer/more timed runs;
#        writes bench/pipe/results-<date>.md, or results-<date>-SIZE.md at another size)
set -euo pipefail
SIZE=${1:-2000000000}
RUNS=${RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${PIPE_BENCH_DIR:-/tmp/pardo-bench-pipe}
mkdir -p "$dir"
file=$dir/lines-$SIZE.txt
for p in hyperfine parallel cc python3; do
  command -v "$p" > /dev/null || { echo "bench/pipe/run.sh needs $p, which is not installed" >&2; exit 1; }
done

if [ ! -s "$file" ] || [ ! -s "$file.lines" ]; then
  avail=$(df -P -B1 "$dir" | awk 'NR == 2 { print $4 }')
  if [ "$avail" -lt $((SIZE + SIZE / 4)) ]; then
    echo "only $avail bytes free under $dir, $SIZE needed: set PIPE_BENCH_DIR or give a smaller SIZE" >&2
    exit 1
  fi
  cc -O2 -o "$dir/gen_lines" "$here/gen_lines.c"
  "$dir/gen_lines" "$SIZE" > "$file" 2> "$file.lines"
fi
expected=$(cat "$file.lines")
bytes=$(stat -c %s "$file")

cargo build --release -p pardo-cli --manifest-path "$root/Cargo.toml" >&2
pardo=$root/target/release/pardo

names=(pardo-pipe gnu-pipe pardo-pipepart gnu-pipepart wc-l cat)
cmds=(
  "$pardo --pipe --block 1M wc -l < $file"
  "parallel --will-cite --pipe --block 1M wc -l < $file"
  "$pardo --pipepart -a $file --block 1M wc -l"
  "parallel --will-cite --pipepart -a $file --block 1M wc -l"
  "wc -l $file"
  "cat $file > /dev/null"
)

# Same total for all: a wrong count (a block lost, doubled or cut inside a line) is a bug.
bad=0
for i in 0 1 2 3 4; do
  total=$(sh -c "${cmds[$i]}" | awk '{ s += $1 } END { printf "%d", s }')
  if [ "$total" = "$expected" ]; then
    echo "${names[$i]}: $total lines, as generated" >&2
  else
    echo "${names[$i]}: counted $total lines, the generator wrote $expected" >&2
    bad=1
  fi
done
[ "$bad" = 0 ] || { echo "line counts differ: not timing a wrong answer" >&2; exit 1; }

# A trial at another size does not overwrite the day's full-size results.
suffix=
[ "$SIZE" = 2000000000 ] || suffix=-$SIZE
out=$here/results-$(date -u +%F)$suffix.md
json=$dir/hyperfine.json
load_before=$(uptime)
args=()
for i in "${!names[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine --warmup 1 --runs "$RUNS" --export-json "$json" "${args[@]}"
load_after=$(uptime)

{
  echo "# --pipe / --pipepart: wc -l per 1 MB block of $bytes bytes ($expected lines)"
  echo
  echo "- date: $(date -u '+%F %H:%M UTC'); machine: nproc $(nproc), uname -r $(uname -r)"
  echo "- $(parallel --version | head -1); pardo $(git -C "$root" rev-parse --short HEAD)"
  echo "- load before: ${load_before#*load average: }; after: ${load_after#*load average: }"
  echo "- command: \`RUNS=$RUNS bench/pipe/run.sh $SIZE\` (hyperfine --warmup 1 --runs $RUNS; the"
  echo "  file is in the page cache after the warm-up run)"
  echo
  python3 - "$json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print("| command | mean s | ± s | min s | max s |")
print("|---|---:|---:|---:|---:|")
for name, r in res.items():
    print(f"| {name} | {r['mean']:.3f} | {r['stddev'] or 0:.3f} | {r['min']:.3f} | {r['max']:.3f} |")
print()
m = {name: r["mean"] for name, r in res.items()}
def ratio(a, b):
    print(f"- {a} / {b}: {m[a] / m[b]:.2f}")
print("Ratios of mean times (below 1: the first is faster):")
print()
ratio("pardo-pipe", "gnu-pipe")
ratio("pardo-pipepart", "gnu-pipepart")
for floor in ("wc-l", "cat"):
    for name in ("pardo-pipe", "gnu-pipe", "pardo-pipepart", "gnu-pipepart"):
        ratio(name, floor)
PY
} > "$out"
cat "$out"
echo "results: $out" >&2
