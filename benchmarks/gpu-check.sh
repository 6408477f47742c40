#!/usr/bin/env bash
# The GPU check of the speed issue, prepared to run once on a lent GPU machine (the `device`
# tool), from the repository root, in under 10 minutes:
#   1. xdkd bench, office job (resnet50 teacher, resnet18 student, 224 px), with --compile
#   2. xdkd bench, digits job, and the scaling table on the GPU
#   3. the quick suite, timed
#   4. determinism: the ci suite twice on the GPU (fast path auto), every record compared
#   5. the embedded digits grid (the six embedded pairs of baselines/digits.yaml) with
#      --jobs-per-gpu auto for at most GRID_SECONDS (default 150): runs finished per hour
# It writes at most 6 files to $OUT (the tool brings back 8): summary.txt, gpu.txt, log.txt,
# bench-office.json, bench-digits.json and results.tar.gz (scaling table, leaderboards,
# records). The machine's python3 holds torch, torchvision and timm but not pydantic:
# carry its wheels as benchmarks/README.md says, and start the command with their install.
set -u
out=${OUT:-gpu-out}
grid_seconds=${GRID_SECONDS:-150}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XDKD_CACHE="$work/cache"
xdkd() { python3 -m benchmark.cli "$@"; }
step() {  # step NAME COMMAND...: run it, its output into log.txt, its exit and time into summary
  local name=$1 started=$SECONDS code
  shift
  echo "=== $name: $*" >> "$out/log.txt"
  "$@" >> "$out/log.txt" 2>&1
  code=$?
  echo "$name: exit $code in $((SECONDS - started)) s" | tee -a "$out/summary.txt"
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc
} > "$out/gpu.txt" 2>&1

step bench-office xdkd bench --device cuda --job office --compile --json "$out/bench-office.json"
step bench-digits xdkd bench --device cuda --job digits --json "$out/bench-digits.json" \
  --scaling --out "$work/scaling"
step quick xdkd run quick --device cuda --out "$work/runs-quick" --results "$work/quick" \
  --no-progress
for copy in a b; do
  step "ci-$copy" xdkd run ci --device cuda --workers 0 --out "$work/ci-$copy" \
    --results "$work/ci-$copy-results" --no-progress
done
step ci-bit-identical python3 - "$work/ci-a" "$work/ci-b" <<'EOF'
import json, sys
from pathlib import Path
a, b = ({p.parent.name: json.loads(p.read_text()) for p in Path(d).glob("runs/*/record.json")}
        for d in sys.argv[1:])
assert a.keys() == b.keys() and a, "the two ci sweeps made different runs"
same = [k for k in a if a[k]["metrics"] == b[k]["metrics"] and a[k]["curves"] == b[k]["curves"]]
print(f"{len(same)} of {len(a)} runs bit-identical (metrics and curves)")
sys.exit(0 if len(same) == len(a) else 1)
EOF
pairs='[{source: mnist, target: mnistm}, {source: mnistm, target: mnist}, '
pairs+='{source: syndigits, target: mnist}, {source: mnist, target: syndigits}, '
pairs+='{source: optdigits, target: mnist}, {source: mnist, target: optdigits}]'
grid_started=$SECONDS
step digits-grid timeout -s INT "$grid_seconds" python3 -m benchmark.cli run digits \
  --device cuda --jobs-per-gpu auto --set "pairs=$pairs" --out "$work/runs-digits" \
  --results "$work/digits" --no-progress
python3 - "$work/runs-digits" "$((SECONDS - grid_started))" >> "$out/summary.txt" <<'EOF'
import sys
from pathlib import Path
done = len(list(Path(sys.argv[1]).glob("runs/*/record.json")))
seconds = float(sys.argv[2])
print(f"digits grid: {done} runs recorded in {seconds:.0f} s: {3600 * done / seconds:.0f} runs/hour")
EOF
tar --exclude='*.pt' -czf "$out/results.tar.gz" -C "$work" scaling quick ci-a-results digits \
  runs-quick/runs runs-digits/runs 2>> "$out/log.txt"
cat "$out/summary.txt"
