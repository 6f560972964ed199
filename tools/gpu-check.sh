#!/usr/bin/env bash
# The CUDA checks, as one short prepared script for a lent GPU machine (the `device` tool runs
# it in the repository root; its python3 holds PyTorch). Everything lands in $OUT (default
# /tmp/gpu-check): the GPU tests, `repro bench` on CUDA with AlexNet's ImageNet-shape step,
# and a short real training run with bf16 and channels_last. About 5 minutes on one H200.
#
#   device run: PYTHONUNBUFFERED=1 bash tools/gpu-check.sh      (timeout_s 480)
#
# Two-device placement (`--devices`) and DDP on nccl need two GPUs: their tests skip on one.
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { echo "=== $1 $(date -Is)"; }

step machine
{ nvidia-smi; "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

step "GPU tests"
timeout 150 "$py" -m pytest -q -p no:cacheprovider -m "gpu or multigpu" tests 2>&1 | tee "$out/pytest-gpu.txt" | tail -n 15

step "bench on cuda (with AlexNet's ImageNet-shape step at batch 128)"
timeout 150 "$py" -m repro bench --device cuda --seconds 2 --imagenet 128 --json --save "$out/bench-cuda.json" \
  > /dev/null 2> "$out/bench-cuda.err" || tail -n 20 "$out/bench-cuda.err"
"$py" - "$out/bench-cuda.json" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
for name, t in r["training"].items():
    print(f"{name}: reference {t['reference_img_s']:,.0f} img/s, harness {t['harness_img_s']:,.0f} "
          f"({t['speedup']:.2f}x), bf16 {t['harness_bf16_img_s']:,.0f} ({t['speedup_bf16']:.2f}x)")
for key, v in r["imagenet"]["alexnet"]["img_s_by_numerics"].items():
    print(f"alexnet at ImageNet shape, {key}: {v:,.0f} img/s")
EOF

step "a short real run on cuda: cifar-80sec, synthetic data, bf16, channels_last"
timeout 90 "$py" -m repro train --model cifar-80sec --dataset synthetic --device cuda --epochs 2 \
  --precision bf16 --channels-last --out "$out/run-bf16" 2>&1 | tail -n 5
ls "$out/run-bf16" 2>/dev/null && rm -f "$out/run-bf16/checkpoint.pt"
step done
