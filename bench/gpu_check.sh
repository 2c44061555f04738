#!/usr/bin/env bash
# The GPU figures issue 18 owes, in one go: run from the repository root on a machine with one
# CUDA GPU (written for an H200; budget <= 8 minutes, each step under its own timeout so a slow
# one cannot eat the others'). Untested: written on a machine without a GPU.
#
#   bash bench/gpu_check.sh            # PYTHON=... to use another interpreter, OUT=... another folder
#
# 1. bench_step at the paper's sizes, --blocks (interleaving stalls on CUDA, see bench_step.py),
#    20 steps: s/step, samples/s, FLOPs/step and MFU against the H200's bf16 dense peak (989 TFLOP/s)
# 2. bench_step --predictor: the student predictor, predictor_attention full vs selected, at
#    selected fractions 0.1 / 0.15 / 0.2 / 1.0 (fp32), paper sizes
# 3. bench_run --device cuda: the demo-fmnist-clutter pipeline (teacher -> RE, REKD) whole, bf16,
#    wall time split by bucket (needs the offline Fashion-MNIST data the CPU runs use)
# 4. only with PAPER_RUN=1 (past the 8 minutes): bench_run --paper 200 --device cuda, the paper's
#    vision pipeline (ViT-Base -> ViT-Tiny, 224 px) on synthetic CIFAR-10-shaped data
set -u
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
status=0
step() {  # step NAME SECONDS CMD...: run CMD under a timeout, note how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s)"
    timeout "$limit" "$@"
    local rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
step bench_step_paper 240 "$PY" bench/bench_step.py --device cuda --blocks --only paper --paper-steps 20 \
    --out "$OUT/bench_step_cuda_mfu.json"
step bench_step_predictor 60 "$PY" bench/bench_step.py --device cuda --predictor --only paper --reps 20 \
    --out "$OUT/bench_step_predictor_cuda.json"
step bench_run_demo 150 "$PY" bench/bench_run.py --device cuda --runs "/tmp/gpu_check_runs_$$" \
    --out "$OUT/bench_run_cuda_demo.json"
if [ "${PAPER_RUN:-0}" = 1 ]; then
    step bench_run_paper 300 "$PY" bench/bench_run.py --device cuda --paper 200 --runs "/tmp/gpu_check_paper_$$" \
        --out "$OUT/bench_run_cuda_paper.json"
fi
exit $status
