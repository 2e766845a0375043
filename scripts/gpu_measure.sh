#!/usr/bin/env bash
# Every GPU figure of docs/BENCHMARKS.md §5 in one short run (GPU time is scarce: about 8 minutes on one H200).
# usage, on a machine with CUDA and PyTorch, from the checkout:  bash scripts/gpu_measure.sh OUT_DIR
# Where optuna/mlflow/hydra are missing, carry wheels built by ../shared/tools/gpu-wheels.sh in .whl/ (git-ignored).
# Ordered by what matters most, each step under its own time limit, each writing its JSON as it ends.
set -uo pipefail
out=${1:?usage: gpu_measure.sh OUT_DIR}
mkdir -p "$out"
if [ -d .whl ] && ! python -c "import optuna, mlflow, hydra" 2>/dev/null; then
  pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/gpu.txt"
step() { local name=$1; shift; echo "== $name ($(date +%T))"; "$@" > "$out/$name.log" 2>&1; echo "exit $?"; tail -n 12 "$out/$name.log"; }

# 1. The command with no override but the device: whole wall, utilization, what auto chose.
step search_synthetic timeout 230 python scripts/bench_gpu_search.py --out "$out/gpu_search.json" --timeout 220 --keep /tmp/gpu_runs \
  --run synthetic +dataset=synthetic dataset.train_size=50000 dataset.test_size=10000 device=cuda
# 2. Four small trials sharing the GPU vs one alone, trials of >= 10 s.
step sharing timeout 90 python scripts/bench_parallel.py --device cuda --trial-seconds 10 --out "$out/gpu_sharing.json"
# 3. Does the auto batch (512, lr 0.141 on 40k images) train as well as the CPU defaults (64, 0.05)? Both at once.
for setting in auto cpu_defaults; do
  extra=(); [ "$setting" = cpu_defaults ] && extra=(train.batch_size=64 train.lr=0.05)
  timeout 170 python scripts/calibrate_synthetic.py --device cuda --dataset synthetic_hard --train-size 50000 --test-size 10000 \
    --nets d2w16,d4w64 --seeds 0 --threads 4 --out "$out/auto_batch_$setting.json" "${extra[@]}" > "$out/auto_batch_$setting.log" 2>&1 &
done
wait; tail -n 4 "$out"/auto_batch_*.log
# 4. The hard synthetic's whole search (its 16x16 images, 50k so the batch grows).
step search_hard timeout 150 python scripts/bench_gpu_search.py --out "$out/gpu_search_hard.json" --timeout 140 \
  --run hard +dataset=synthetic_hard dataset.train_size=50000 device=cuda
# 5. Trainer vs a hand-written loop at the auto batch (512).
step throughput timeout 80 python scripts/bench_throughput.py --device cuda --no-tutorial --repeats 2 --run-seconds 2 --models baseline,large \
  --out "$out/throughput_cuda_auto.json"
# 6. The logged model loads (it is served on the CPU wherever it is).
step model_load env MLFLOW_TRACKING_URI=sqlite:////tmp/gpu_runs/synthetic/mlflow.db timeout 60 python -c \
  "import mlflow; m = mlflow.pyfunc.load_model('models:/searcher-synthetic/1'); print('pyfunc loads on', m._model_impl.device)"
echo "== done ($(date +%T))"
