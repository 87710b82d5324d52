#!/usr/bin/env bash
# The GPU experiments behind the numbers in benchmarks/README.md, one command per machine.
#
#   speed   (1 GPU, e.g. one H200): the benchmark of record under an 80 GB cap (an H100's memory): the naive
#           path pushed to its limit (a 30 s step cap), Unsloth (benchmarks/peer_unsloth.py, its own site from
#           .peer-site.tar.xz), then the seed, tuned and lever rows, all in one process per sweep, one after
#           the other; train_speed.json holds every row
#   levers  (1 GPU): the second half: GPU tests, regional compile, offload, a kernel profile of the best row, and
#           the seed-vs-tuned loss comparison over the same 20 steps
#   multi   (4 GPUs): DDP, DeepSpeed ZeRO-2/3 and FSDP on GPU pairs for 20 steps, one-GPU references at the
#           same effective batch, reload checks of sharded adapters on one GPU (last run on H100s, 2026-11-28)
#
# Needs: .devsite/ or .devsite.tar.xz (../shared/device/build-site.sh, then tar -cJf), data/tokenizer/ (any
# saved tokenizer; the SmolLM2 one from `make demo` is used), a GPU machine. Results go to $OUT (or ./gpu-results).
# The model is a randomly initialised Llama-3.2-3B (exact architecture): weights change neither memory
# nor speed, and the real ones cannot be downloaded there.
set -uo pipefail
mode=${1:?usage: gpu_session.sh speed|levers|multi}
OUT=${OUT:-$PWD/gpu-results}
[ -d .devsite ] || tar -xJf .devsite.tar.xz  # the archive travels: the folder is over the device's carry limit
mkdir -p "$OUT"
export PYTHONPATH=$PWD/.devsite:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
MODEL=/tmp/llama-3.2-3b-random
CORPUS=/tmp/bench_corpus
nvidia-smi -L | tee "$OUT/gpus.txt"
python3 -c "import torch, transformers, trl, peft; print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__)" | tee -a "$OUT/gpus.txt"
python3 -m scripts.random_model "$MODEL" --arch llama-3.2-3b --tokenizer data/tokenizer >/dev/null &
python3 -m benchmarks.bench_corpus "$CORPUS" --documents 600 | tail -1
wait

# A run's numbers: training_stats.json, copied out under the run's name.
train() {  # train NAME GPUS ACCELERATE_CONFIG RECIPE [recipe flags...]
  local name=$1 gpus=$2 config=$3 recipe=$4; shift 4
  local n; n=$(awk -F, '{print NF}' <<<"$gpus")
  CUDA_VISIBLE_DEVICES=$gpus timeout 420 accelerate launch --config_file "$config" --num_processes "$n" \
    -m climate_sft.train --config "$recipe" --model_name_or_path "$MODEL" --corpus_dir "$CORPUS" \
    --output_dir "/tmp/runs/$name" --report_to none "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $?"
  cp "/tmp/runs/$name/training_stats.json" "$OUT/$name.json" 2>/dev/null
}

cap=(--memory-cap-gib 79.2)  # an H100's 80 GB, less what CUDA's context takes
if [ "$mode" = speed ]; then
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # as Unsloth sets for itself: reserved ~ allocated
  sweep() {  # sweep NAME SECONDS ARGS...: one train_speed process
    local name=$1 seconds=$2; shift 2
    timeout "$seconds" python3 -m benchmarks.train_speed --model "$MODEL" --corpus "$CORPUS" "${cap[@]}" \
      --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $?"
  }
  sweep naive 150 --warmup 1 --steps 2 --step-time-cap 30 --variant naive:8,16,32
  mkdir -p /tmp/peer-site && tar -xJf .peer-site.tar.xz -C /tmp/peer-site
  PYTHONPATH=/tmp/peer-site timeout 120 python3 benchmarks/peer_unsloth.py --model "$MODEL" --corpus "$CORPUS" \
    --batches 16,32 --warmup 2 --steps 3 --memory-cap-gb 79.2 --out "$OUT/unsloth.json" > "$OUT/unsloth.log" 2>&1
  echo "unsloth: exit $?"
  sweep train_speed 240 --warmup 2 --steps 3 --include "$OUT/naive.json" --include "$OUT/unsloth.json" \
    --variant fast:16,20 --variant fast_every_2nd_layer:24,32 --variant fast_checkpointing:128 --variant seed:64
  tail -n 25 "$OUT/train_speed.log"
elif [ "$mode" = levers ]; then
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  timeout 100 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests: exit $? ($(tail -n 1 "$OUT/gpu_tests.log"))"
  # the same 20 steps, data and seed: does speed change the mathematics?
  timeout 200 python3 -m benchmarks.train_speed --model "$MODEL" --corpus "$CORPUS" "${cap[@]}" --warmup 0 \
    --steps 20 --override "--seed 7" --variant seed:16 --variant fast_checkpointing:16 --variant fast:16 \
    --out "$OUT/loss_parity.json" > "$OUT/loss_parity.log" 2>&1
  echo "loss parity: exit $?"
  ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1 timeout 150 python3 -m benchmarks.train_speed --model "$MODEL" \
    --corpus "$CORPUS" "${cap[@]}" --warmup 3 --steps 3 --variant fast_checkpointing:4,8 --variant fast:2 --variant fast_offload:128 \
    --variant fast_compiled:16 --out "$OUT/levers.json" > "$OUT/levers.log" 2>&1
  echo "levers: exit $?"
  timeout 90 python3 -m benchmarks.train_speed --model "$MODEL" --corpus "$CORPUS" "${cap[@]}" --warmup 2 \
    --steps 3 --variant fast:16 --profile fast:16 --out "$OUT/profile.json" \
    > "$OUT/profile.log" 2>&1
  echo "profile: exit $?"
  tail -n 6 "$OUT"/loss_parity.log "$OUT"/levers.log
elif [ "$mode" = multi ]; then
  python3 -m benchmarks.bench_corpus /tmp/small_corpus --documents 140 | tail -1
  # 20 steps, effective batch 8 sequences of 2048 tokens: 4 per GPU on two GPUs, 4 x 2 accumulation on one.
  # Same seed and data order, so the losses are comparable step by step.
  run=(--corpus_dir /tmp/small_corpus --max_steps 20 --per_device_train_batch_size 4 --effective_batch_size 8
       --eval_strategy steps --eval_steps 20 --save_strategy steps --save_steps 20 --logging_steps 1 --seed 7)
  lora=(--load_in_4bit false --dtype bfloat16)
  q=recipes/qlora_h100_bf16.yaml
  (train ddp_qlora 1,2 accelerate_configs/multi_gpu.yaml $q "${run[@]}"
   train zero2_qlora 1,2 accelerate_configs/deepspeed_zero2.yaml $q "${run[@]}") &
  pair=$!
  train one_gpu_qlora 3 accelerate_configs/single_h100.yaml $q "${run[@]}"
  train one_gpu_lora 3 accelerate_configs/single_h100.yaml $q "${run[@]}" "${lora[@]}"
  train zero3_lora 0,3 accelerate_configs/deepspeed_zero3.yaml $q "${run[@]}" "${lora[@]}"
  train fsdp_lora 0,3 accelerate_configs/fsdp.yaml $q "${run[@]}" "${lora[@]}"
  wait $pair
  for name in zero3_lora fsdp_lora zero2_qlora; do
    CUDA_VISIBLE_DEVICES=1 timeout 120 python3 -m benchmarks.reload_check "/tmp/runs/$name" 2>>"$OUT/reload.log" | tail -1 | tee -a "$OUT/reload.jsonl"
  done
  tail -n 3 "$OUT"/*_lora.log "$OUT"/*_qlora.log
  # the device returns at most 8 files: everything in one archive
  (cd "$OUT" && tar czf gpu-multi.tgz --remove-files ./*.json ./*.log ./*.txt ./*.jsonl 2>/dev/null)
fi
ls -la "$OUT"
