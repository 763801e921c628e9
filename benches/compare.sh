#!/usr/bin/env bash
# Runs `darts bench` and the PyTorch step (if torch is installed) on the same preset and thread
# count, one after the other on this machine, and prints both and the ratios.
# Usage: benches/compare.sh [tiny|standard] [steps] [threads] [first|second]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-tiny}
steps=${2:-5}
threads=${3:-$(nproc)}
order=${4:-first}
cargo build --release -q -p darts-cli
ours=$(target/release/darts bench --preset "$preset" --steps "$steps" --threads "$threads" --order "$order" --json)
echo "ours:    $ours"
if ! python3 -c "import torch" 2>/dev/null; then
    echo "PyTorch is not installed (pip install torch); no comparison."
    exit 0
fi
theirs=$(python3 benches/pytorch_step.py --preset "$preset" --steps "$steps" --threads "$threads" --order "$order")
echo "pytorch: $theirs"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"step time ratio ours/pytorch: {o['median_step_seconds'] / t['median_step_seconds']:.3f} "
      f"({o['median_step_seconds']:.3f} s vs {t['median_step_seconds']:.3f} s, {o['threads']} threads, {o['order']} order)")
print(f"peak memory ratio ours/pytorch: {o['peak_rss_bytes'] / t['peak_rss_bytes']:.3f} "
      f"({o['peak_rss_bytes'] / 2**30:.2f} GiB vs {t['peak_rss_bytes'] / 2**30:.2f} GiB)")
PY
