#!/usr/bin/env bash
# The design experiments of the demo's regime (docs/world_experiments.md, section 9), world seed 0 only.
# Usage: benchmarks/cure_experiments.sh BASE OUT NAME [KEY=VALUE ...]
#   BASE: the seed-0 base's weights (tripletclip demo --world-seed 0 pretrains and caches it; see the docs)
# Runs CLIP, NegCLIP and TripletCLIP (training seed 0; env METHODS, JOBS) with the given demo preset keys, then scores them on the
# transfer benchmark (benchmarks/transfer_eval.py).
set -euo pipefail
base=$1; out=$2; name=$3; shift 3
tripletclip demo --out "$out/$name" --world-seed 0 --seeds 0 --methods ${METHODS:-clip,negclip,tripletclip} --jobs ${JOBS:-1} \
    base_from="$base" "$@" > "$out/$name.log" 2>&1
python "$(dirname "$0")/transfer_eval.py" "$out/$name" >> "$out/$name.log" 2>&1
