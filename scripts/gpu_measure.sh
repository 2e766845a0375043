#!/usr/bin/env bash
# Every GPU figure of docs/BENCHMARKS.md §5, in parts (GPU time is scarce: run the parts that matter, in one call).
# usage, on a machine with CUDA and PyTorch, from the checkout:  bash scripts/gpu_measure.sh OUT_DIR [PART ...]
# PARTs: tests modes search model sharing throughput hard threads (default: all, in that order; about 13 minutes on one
# H200: pick parts).
# Where optuna/mlflow/hydra are missing, carry wheels built by ../shared/tools/gpu-wheels.sh in .whl/ (git-ignored).
# Each part runs under its own time limit and writes its JSON (and log) into OUT_DIR as it ends.
set -uo pipefail
out=${1:?usage: gpu_measure.sh OUT_DIR [PART ...]}
shift
parts=${*:-tests modes search model sharing throughput hard threads}
mkdir -p "$out"
if [ -d .whl ] && ! python -c "import optuna, mlflow, hydra" 2>/dev/null; then
  pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
  # Byte-compile them on all cores, as a user's pip install does: without it the first search compiles mlflow, sqlalchemy,
  # alembic, hydra and optuna inside its own timed start-up (importing them took 9.5-10.4 s with no bytecode, 4.3-4.5 s
  # with it, on 2 cores of an AMD EPYC: part of the 17.8 s start measured on the H200).
  python -m compileall -q -j 0 /tmp/site > /dev/null
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/gpu.txt"
step() { local name=$1; shift; echo "== $name ($(date +%T))"; "$@" > "$out/$name.log" 2>&1; echo "exit $?"; tail -n 14 "$out/$name.log"; }

for part in $parts; do
  case $part in
    # The CUDA-only tests: a replayed CUDA graph computes what eager steps compute; the memory bound is above the probe.
    tests) step tests timeout 150 python -m pytest -q -s -p no:cacheprovider tests/test_steps.py tests/test_auto.py tests/test_threads.py ;;
    # Eager, CUDA graphs and torch.compile per model size: setup, steady epoch, break-even.
    modes) step modes timeout 200 python scripts/bench_step_modes.py --out "$out/step_modes.json" --epochs 6 ;;
    # The command with no override but the device: wall, phases, slots, utilization, what auto chose.
    search) step search_synthetic timeout 230 python scripts/bench_gpu_search.py --out "$out/gpu_search.json" --timeout 220 \
              --keep /tmp/gpu_runs --run synthetic +dataset=synthetic dataset.train_size=50000 dataset.test_size=10000 device=cuda ;;
    # The logged model loads (it is served on the CPU wherever it is).
    model) step model_load env MLFLOW_TRACKING_URI=sqlite:////tmp/gpu_runs/synthetic/mlflow.db timeout 60 python -c \
             "import mlflow; m = mlflow.pyfunc.load_model('models:/searcher-synthetic/1'); print('pyfunc loads on', m._model_impl.device)" ;;
    # Four small trials sharing the GPU vs one alone, trials of >= 10 s, CUDA graphs on (the default) and off.
    sharing) step sharing timeout 100 python scripts/bench_parallel.py --device cuda --trial-seconds 10 --out "$out/gpu_sharing.json"
             step sharing_eager timeout 100 python scripts/bench_parallel.py --device cuda --trial-seconds 10 --no-cuda-graphs \
               --out "$out/gpu_sharing_eager.json" ;;
    # Trainer vs a hand-written loop at the auto batch, every size.
    throughput) step throughput timeout 150 python scripts/bench_throughput.py --device cuda --no-tutorial --repeats 3 --run-seconds 3 \
                  --out "$out/throughput_cuda.json" ;;
    # The hard synthetic's whole search (its 16x16 images, 50k so the batch grows).
    hard) step search_hard timeout 170 python scripts/bench_gpu_search.py --out "$out/gpu_search_hard.json" --timeout 160 \
            --run hard +dataset=synthetic_hard dataset.train_size=50000 device=cuda ;;
    # execution=threads: four graphed trials in one process, a CUDA stream each, vs one alone; then the command
    # with trials in threads (as auto would run them if this beats processes: compare with the search part).
    threads) step sharing_threads timeout 100 python scripts/bench_parallel.py --device cuda --trial-seconds 10 --backend threads \
               --out "$out/gpu_sharing_threads.json"
             step search_threads timeout 230 python scripts/bench_gpu_search.py --out "$out/gpu_search_threads.json" --timeout 220 \
               --run threads +dataset=synthetic dataset.train_size=50000 dataset.test_size=10000 device=cuda execution=threads execution.workers=4 ;;
    *) echo "unknown part: $part" ;;
  esac
done
echo "== done ($(date +%T))"
