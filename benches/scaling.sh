#!/usr/bin/env bash
# Thread scaling of the search step: `darts bench` and the PyTorch step (when torch is installed) at
# each thread count, one after the other on this machine, from the most threads down (so a time
# limit cuts the slowest runs last). Prints one markdown table row per thread count.
# Usage: benches/scaling.sh [preset] [our steps] [pytorch steps] [thread counts...]
#   DARTS=path/to/darts to use a prebuilt binary (default: build with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-standard}
ours_steps=${2:-3}
torch_steps=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(16 8 4 2 1)
if [ -z "${DARTS:-}" ]; then
    cargo build --release -q -p darts-cli
    DARTS=target/release/darts
fi
has_torch=0
python3 -c "import torch" 2>/dev/null && has_torch=1
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "| threads | ours s/step | ours peak GiB | PyTorch s/step | PyTorch peak GiB | ratio |"
echo "| --- | --- | --- | --- | --- | --- |"
for t in "${threads[@]}"; do
    o=$("$DARTS" bench --preset "$preset" --steps "$ours_steps" --threads "$t" --json)
    os=$(field "$o" median_step_seconds)
    om=$(python3 -c "print(f'{$(field "$o" peak_rss_bytes) / 2**30:.2f}')")
    ps="-" pm="-" ratio="-"
    if [ "$has_torch" = 1 ]; then
        p=$(python3 benches/pytorch_step.py --preset "$preset" --steps "$torch_steps" --threads "$t")
        ps=$(field "$p" median_step_seconds)
        pm=$(python3 -c "print(f'{$(field "$p" peak_rss_bytes) / 2**30:.2f}')")
        ratio=$(python3 -c "print(f'{$os / $ps:.3f}')")
        ps=$(python3 -c "print(f'{$ps:.3f}')")
    fi
    echo "| $t | $(python3 -c "print(f'{$os:.3f}')") | $om | $ps | $pm | $ratio |"
done
