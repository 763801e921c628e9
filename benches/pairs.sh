#!/usr/bin/env bash
# Thread speed-up of the search step as issue 10 measures it: N alternating pairs of
# `darts bench` at 1 thread then at T threads, back to back (so slow drifts of a noisy machine hit
# both halves of a pair alike); prints each pair's speed-up and their median.
# Usage: benches/pairs.sh [preset] [steps per run] [pairs] [threads]
#   DARTS=path/to/darts to use a prebuilt binary (default: build with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-standard}
steps=${2:-2}
pairs=${3:-5}
threads=${4:-2}
if [ -z "${DARTS:-}" ]; then
    cargo build --release -q -p darts-cli
    DARTS=target/release/darts
fi
time_of() {
    "$DARTS" bench --preset "$preset" --steps "$steps" --threads "$1" --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['median_step_seconds'])"
}
ratios=()
for i in $(seq 1 "$pairs"); do
    one=$(time_of 1)
    many=$(time_of "$threads")
    r=$(python3 -c "print(f'{$one / $many:.3f}')")
    echo "pair $i: 1 thread $one s, $threads threads $many s: ${r}x"
    ratios+=("$r")
done
python3 -c "import statistics,sys; print(f'median speed-up 1 -> $threads threads over $pairs pairs: {statistics.median(map(float, sys.argv[1:])):.3f}x')" "${ratios[@]}"
