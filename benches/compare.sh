#!/usr/bin/env bash
# Runs `darts bench` and the PyTorch step (if torch is installed) on the same preset and thread
# count, one after the other on this machine, and prints both and the ratios. With ROUNDS > 1 it
# alternates the two ROUNDS times (ours, PyTorch, ours, PyTorch, ...) and also prints each round's
# ratio and their median: on a machine whose speed swings by minutes, a slow minute then hits one
# round, not the whole comparison.
# Usage: benches/compare.sh [tiny|standard] [steps] [threads] [first|second] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-tiny}
steps=${2:-5}
threads=${3:-$(nproc)}
order=${4:-first}
rounds=${5:-1}
cargo build --release -q -p darts-cli
have_torch=1
python3 -c "import torch" 2>/dev/null || have_torch=0
ratios=()
for r in $(seq 1 "$rounds"); do
    ours=$(target/release/darts bench --preset "$preset" --steps "$steps" --threads "$threads" --order "$order" --json)
    echo "ours:    $ours"
    if [ "$have_torch" = 0 ]; then
        echo "PyTorch is not installed (pip install torch); no comparison."
        exit 0
    fi
    theirs=$(python3 benches/pytorch_step.py --preset "$preset" --steps "$steps" --threads "$threads" --order "$order")
    echo "pytorch: $theirs"
    ratios+=("$(python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{o['median_step_seconds'] / t['median_step_seconds']:.3f}")
print(f"step time ratio ours/pytorch: {o['median_step_seconds'] / t['median_step_seconds']:.3f} "
      f"({o['median_step_seconds']:.3f} s vs {t['median_step_seconds']:.3f} s, {o['threads']} threads, {o['order']} order)",
      file=sys.stderr)
print(f"peak memory ratio ours/pytorch: {o['peak_rss_bytes'] / t['peak_rss_bytes']:.3f} "
      f"({o['peak_rss_bytes'] / 2**30:.2f} GiB vs {t['peak_rss_bytes'] / 2**30:.2f} GiB)",
      file=sys.stderr)
PY
)")
done
if [ "$rounds" -gt 1 ]; then
    python3 -c "import statistics,sys; r = list(map(float, sys.argv[1:])); print(f'step time ratio over {len(r)} alternating rounds: median {statistics.median(r):.3f} (each: {\", \".join(f\"{x:.3f}\" for x in r)})')" "${ratios[@]}"
fi
