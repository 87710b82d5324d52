#!/usr/bin/env bash
# The GPU experiments behind the numbers in benchmarks/README.md, one command per machine.
#
#   speed   (1 GPU, e.g. one H200): the benchmark of record under an 80 GB cap (an H100's memory): the naive
#           path pushed to its limit (a 30 s step cap), Unsloth (benchmarks/peer_unsloth.py, its own site from
#           .peer-site.tar.xz), then the seed, tuned and lever rows, all in one process per sweep, one after
#           the other; train_speed.json holds every row
#   levers  (1 GPU): the second half: GPU tests, regional compile, offload, a kernel profile of the best row, and
#           the seed-vs-tuned loss comparison over the same 20 steps
#   round3  (1 GPU, about 9 minutes: setup ~1, Unsloth ~2, our 8 rows ~4, parity ~2.5): Unsloth (6 warm-up, 4 timed steps), then our round-3 variants under the
#           79.2 GiB cap (bf16 fast, +FA3, +fused LoRA, fp8 rowwise and tensorwise, the overlapped offload at
#           Unsloth's memory), then fp8 against the same recipe in bf16 over 200 steps (loss parity); every variant's
#           recipe is loaded first (train_speed --check-variants), so a typo ends the call in seconds. FA4 needs
#           flash-attn-4 in .devsite (build-site.sh flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1); without it
#           FA3/FA4 fall back to torch's built-in FlashAttention with one notice
#   multi SUB (2 GPUs, e.g. two H200s; the tuned recipe qlora_h100_fast.yaml at max_length 2048 unless stated;
#           every training process capped at an H100's 79.2 GiB through benchmarks/capped_train.py, except in
#           `nodes`, which runs the README's command as written). Each SUB fits one 10-minute device call;
#           names after SUB run only those runs of it (e.g. `multi big one fsdp`, then `multi big zero3`):
#     scaling [one ddp zero2 zero3 fsdp]  one GPU, then two, each alone on the machine, same 16 rows per GPU and
#           effective batch 32 (16 x 2 on one GPU, 16 x 1 on two), 13 steps, 3 of warm-up excluded; the table of
#           tokens/s per GPU, scaling efficiency and memory (benchmarks/scaling_table.py)
#     qlora [one fsdp zero3]  4-bit base under FSDP and ZeRO-3 (storage in bf16: climate_sft.modeling), 20 steps,
#           losses against one GPU at the same effective batch (benchmarks/compare_runs.py), adapters reloaded
#           on one GPU (benchmarks/reload_check.py)
#     big [one fsdp zero3]  full fine-tune (no LoRA) of a random Llama-3.1-8B: fp32 weights, bf16 autocast,
#           fused AdamW = 16 bytes a parameter, 128 GB: out of memory on one GPU, trains on two sharded
#     resume  a DDP run SIGKILLed (its whole process tree) after its second checkpoint, rerun: same losses and
#           adapter as an uninterrupted run
#     nodes   the README's multi-node command as two "machines" on this host (--num_machines 2, --machine_rank
#           0/1, one GPU each, rendezvous on 127.0.0.1) for DDP and DeepSpeed ZeRO-2, against one 2-GPU launch
#   (The 4-GPU `multi` of 2026-11-28, GPU pairs side by side with other jobs, is results/multi_gpu_h100.json.)
#
# Needs: .devsite/ or .devsite.tar.xz (../shared/device/build-site.sh, then tar -cJf), data/tokenizer/ (any
# saved tokenizer; the SmolLM2 one from `make demo` is used), a GPU machine. Results go to $OUT (or ./gpu-results).
# The models are randomly initialised (exact Llama-3.2-3B / Llama-3.1-8B architectures): weights change neither
# memory nor speed, and the real ones cannot be downloaded there. Models and runs are kept under runs/gpu/ (ignored
# by git), so a machine kept warm between calls reuses them.
set -uo pipefail
mode=${1:?usage: gpu_session.sh speed|levers|round3|multi scaling|qlora|big|resume|nodes [runs...]}
sub=${2:-}
OUT=${OUT:-$PWD/gpu-results}
[ -d .devsite ] || tar -xJf .devsite.tar.xz  # the archive travels: the folder is over the device's carry limit
mkdir -p "$OUT"
export PYTHONPATH=$PWD/.devsite:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
STORE=$PWD/runs/gpu     # models, corpora and runs; kept by a warm machine
RUNS=$STORE/runs
MODEL=$STORE/llama-3.2-3b-random
CORPUS=$STORE/bench_corpus
SMALL=$STORE/small_corpus
mkdir -p "$RUNS"
nvidia-smi -L | tee "$OUT/gpus.txt"
python3 - "$*" <<'PY' | tee "$OUT/meta.json"
import importlib, json, subprocess, sys, time
versions = {}
for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "deepspeed", "liger_kernel"):
    try:
        versions[name] = importlib.import_module(name).__version__
    except Exception as error:  # a missing extra is recorded, not fatal
        versions[name] = f"absent ({type(error).__name__})"
cards = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.splitlines()
print(json.dumps({"command": f"bash benchmarks/gpu_session.sh {sys.argv[1]}", "date": time.strftime("%Y-%m-%d"),
                  "cards": cards, "versions": versions}))
PY
if [ "$sub" != big ]; then  # big trains its own 8B model on the small corpus
  [ -f "$MODEL/config.json" ] || python3 -m scripts.random_model "$MODEL" --arch llama-3.2-3b --tokenizer data/tokenizer >/dev/null &
  [ -f "$CORPUS/stats.json" ] || python3 -m benchmarks.bench_corpus "$CORPUS" --documents 600 | tail -1
fi
[ -f "$SMALL/stats.json" ] || python3 -m benchmarks.bench_corpus "$SMALL" --documents 140 | tail -1
wait

entry=(-m climate_sft.train)  # multi modes: benchmarks.capped_train (the same entry point under the 80 GB cap)
# A run's numbers: training_stats.json, copied out under the run's name.
train() {  # train NAME GPUS ACCELERATE_CONFIG RECIPE [recipe flags...]
  local name=$1 gpus=$2 config=$3 recipe=$4; shift 4
  local n; n=$(awk -F, '{print NF}' <<<"$gpus")
  [ -n "${KEEP:-}" ] || rm -rf "${RUNS:?}/$name"  # a warm machine's earlier run would be resumed, not repeated
  CUDA_VISIBLE_DEVICES=$gpus timeout "${LIMIT:-420}" accelerate launch --config_file "$config" --num_processes "$n" \
    --main_process_port $((29500 + RANDOM % 1000)) "${entry[@]}" --config "$recipe" --model_name_or_path "$MODEL" \
    --corpus_dir "$CORPUS" --output_dir "$RUNS/$name" --report_to none "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc $(grep -m1 -o 'out of GPU memory[^;]*' "$OUT/$name.log")"
  cp "$RUNS/$name/training_stats.json" "$OUT/$name.json" 2>/dev/null
  return $rc
}
wanted() { [ -z "${picked:-}" ] || [[ " $picked " == *" $1 "* ]]; }  # wanted RUN: named after SUB, or none named
picked="${*:3}"

cap=(--memory-cap-gib 79.2)  # an H100's 80 GB, less what CUDA's context takes
# round 3 (benchmarks/README.md): each lever alone on the fast recipe, then fp8 (its recipe has fused LoRA and FA3
# too), and the overlapped offload at Unsloth's own memory (its best batch, 16, in ~7.5 GB)
ROUND3_SPEED=(--variant fast:16 --variant fast_fa3:16 --variant fast_fused_lora:16 --variant fp8:16,20
              --variant fp8_tensorwise:16 --variant fast_offload_overlapped:16 --variant fp8_offload_overlapped:16)
ROUND3_PARITY=(--variant bf16_base:4 --variant fp8:4)  # 200 steps of 4 rows: ~70 s each at ~11k tokens a step
round3_plan() {  # the variants, checked against train_speed's table before the device time is spent
  python3 -m benchmarks.train_speed --check-variants "${ROUND3_SPEED[@]}" "${ROUND3_PARITY[@]}" || exit 2
}
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
elif [ "$mode" = round3 ]; then
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  round3_plan
  mkdir -p /tmp/peer-site && tar -xJf .peer-site.tar.xz -C /tmp/peer-site
  PYTHONPATH=/tmp/peer-site timeout 120 python3 benchmarks/peer_unsloth.py --model "$MODEL" --corpus "$CORPUS" \
    --batches 8,16 --warmup 6 --steps 4 --memory-cap-gb 79.2 --out "$OUT/unsloth.json" > "$OUT/unsloth.log" 2>&1
  echo "unsloth: exit $?"
  timeout 240 python3 -m benchmarks.train_speed --model "$MODEL" --corpus "$CORPUS" "${cap[@]}" --warmup 2 --steps 4 \
    --include "$OUT/unsloth.json" "${ROUND3_SPEED[@]}" --out "$OUT/round3.json" > "$OUT/round3.log" 2>&1
  echo "round3 speed: exit $?"
  # does fp8 change the mathematics? the same 200 steps, data and seed, fp8 against the same recipe in bf16
  timeout 150 python3 -m benchmarks.train_speed --model "$MODEL" --corpus "$CORPUS" "${cap[@]}" --warmup 0 \
    --steps 200 --override "--seed 7" "${ROUND3_PARITY[@]}" --out "$OUT/fp8_parity.json" > "$OUT/fp8_parity.log" 2>&1
  echo "fp8 parity: exit $?"
  python3 - "$OUT/fp8_parity.json" <<'PY' | tee "$OUT/fp8_parity_gap.json"
import json, sys
rows = {r["variant"]: r.get("losses") for r in json.load(open(sys.argv[1]))["results"]}
ref, fp8 = rows.get("bf16_base"), rows.get("fp8")
if ref and fp8 and len(ref) == len(fp8):
    mean = lambda xs: sum(xs[-10:]) / len(xs[-10:])  # the last 10 steps: one step's batch is noisy
    print(json.dumps({"steps": len(ref), "final_loss": {"bf16": ref[-1], "fp8": fp8[-1]},
                      "last_10_mean_relative_gap": abs(mean(fp8) - mean(ref)) / mean(ref),
                      "largest_step_relative_gap": max(abs(a - b) / b for a, b in zip(fp8, ref))}))
else:
    print(json.dumps({"error": "parity rows missing or cut short", "steps": {k: len(v or []) for k, v in rows.items()}}))
PY
  tail -n 16 "$OUT/round3.log"
elif [ "$mode" = multi ]; then
  [ "$(nvidia-smi -L | grep -c GPU)" -ge 2 ] || { echo "multi needs two GPUs"; exit 1; }
  entry=(-m benchmarks.capped_train --memory-cap-gib 79.2)
  fast=recipes/qlora_h100_fast.yaml
  single=accelerate_configs/single_h100.yaml ddp=accelerate_configs/multi_gpu.yaml fsdp=accelerate_configs/fsdp.yaml
  zero2=accelerate_configs/deepspeed_zero2.yaml zero3=accelerate_configs/deepspeed_zero3.yaml
  # fused AdamW everywhere: bitsandbytes' 8-bit optimizers fail under FSDP, and every row must use the same one
  adamw=(--optim adamw_torch_fused)
  compare() {  # compare REFERENCE OTHER [tolerances]: one JSON line, kept
    python3 -m benchmarks.compare_runs "$RUNS/$1" "$RUNS/$2" "${@:3}" | tee -a "$OUT/parity.jsonl"
  }
  if [ "$sub" = scaling ]; then
    run=("${adamw[@]}" --per_device_train_batch_size 16 --effective_batch_size 32 --max_steps 13
         --eval_strategy no --save_strategy no --logging_steps 1 --seed 7)
    wanted one && train scaling_one_gpu 0 $single $fast "${run[@]}"
    wanted ddp && train scaling_ddp 0,1 $ddp $fast "${run[@]}"
    wanted zero2 && train scaling_zero2 0,1 $zero2 $fast "${run[@]}"
    wanted zero3 && train scaling_zero3 0,1 $zero3 $fast "${run[@]}"
    wanted fsdp && train scaling_fsdp 0,1 $fsdp $fast "${run[@]}"
    rows=()
    for s in ddp zero2 zero3 fsdp; do
      [ -f "$RUNS/scaling_$s/training_stats.json" ] && rows+=(--run "$s=$RUNS/scaling_$s")
    done
    python3 -m benchmarks.scaling_table --one-gpu "$RUNS/scaling_one_gpu" "${rows[@]}" --out "$OUT/scaling_table.json"
  elif [ "$sub" = qlora ]; then
    run=("${adamw[@]}" --corpus_dir "$SMALL" --per_device_train_batch_size 16 --effective_batch_size 32
         --max_steps 20 --eval_strategy steps --eval_steps 20 --save_strategy no --logging_steps 1 --seed 7)
    wanted one && train qlora_one_gpu 0 $single $fast "${run[@]}"
    wanted fsdp && train qlora_fsdp 0,1 $fsdp $fast "${run[@]}"
    wanted zero3 && train qlora_zero3 0,1 $zero3 $fast "${run[@]}"
    for s in fsdp zero3; do
      [ -f "$RUNS/qlora_$s/training_stats.json" ] || continue
      # losses only: the adapters train in fp32 on one GPU, in bf16 under FSDP/ZeRO-3 (climate_sft/trainer.py)
      compare qlora_one_gpu "qlora_$s" --loss-rtol 1e-2 --weight-atol inf
      CUDA_VISIBLE_DEVICES=0 timeout 120 python3 -m benchmarks.reload_check "$RUNS/qlora_$s" 2>>"$OUT/reload.log" \
        | tail -1 | tee -a "$OUT/reload.jsonl"
    done
  elif [ "$sub" = big ]; then
    BIG=$STORE/llama-3.1-8b-random
    [ -f "$BIG/config.json" ] || python3 -m scripts.random_model "$BIG" --arch llama-3.1-8b --tokenizer data/tokenizer
    # no LoRA, no 4-bit: every weight trains; 1 row of 2048 tokens per GPU, effective batch 2
    run=("${adamw[@]}" --model_name_or_path "$BIG" --corpus_dir "$SMALL" --use_peft false --load_in_4bit false
         --dtype float32 --bf16 true --gradient_checkpointing true --use_liger_kernel false
         --per_device_train_batch_size 1 --effective_batch_size 2 --max_steps 8 --eval_strategy no
         --save_strategy no --logging_steps 1 --seed 7)
    wanted one && LIMIT=240 train big_one_gpu 0 $single $fast "${run[@]}"
    wanted fsdp && train big_fsdp 0,1 $fsdp $fast "${run[@]}"
    wanted zero3 && train big_zero3 0,1 $zero3 $fast "${run[@]}"
  elif [ "$sub" = resume ]; then
    run=("${adamw[@]}" --corpus_dir "$SMALL" --max_steps 12 --save_strategy steps --save_steps 4 --eval_strategy no
         --logging_steps 1 --seed 7)
    train resume_whole 0,1 $ddp $fast "${run[@]}"
    train resume_killed 0,1 $ddp $fast "${run[@]}" &
    launcher=$!
    until [ "$(ls "$RUNS"/resume_killed/checkpoint-*/trainer_state.json 2>/dev/null | wc -l)" -ge 2 ] \
      || ! kill -0 $launcher 2>/dev/null; do sleep 0.05; done
    # a machine dying: the whole tree (torchrun starts its workers in sessions of their own), frozen, then killed
    tree() { echo "$1"; local child; for child in $(pgrep -P "$1"); do tree "$child"; done; }
    pids=$(tree $launcher)
    kill -STOP $pids 2>/dev/null; kill -KILL $pids 2>/dev/null; wait $launcher 2>/dev/null
    echo "killed with checkpoints: $(ls -d "$RUNS"/resume_killed/checkpoint-* | xargs -n1 basename | tr '\n' ' ')"
    [ ! -f "$RUNS/resume_killed/training_stats.json" ] || echo "resume: NOT TESTED, the run had finished before the kill"
    mv "$OUT/resume_killed.log" "$OUT/resume_killed_first.log"
    KEEP=1 train resume_killed 0,1 $ddp $fast "${run[@]}"   # the same command again
    grep -m1 "resuming from" "$RUNS/resume_killed/train.log"
    compare resume_whole resume_killed --loss-rtol 1e-3 --weight-atol 1e-3
  elif [ "$sub" = nodes ]; then
    entry=(-m climate_sft.train)  # the README's command as written
    run=(--corpus_dir "$SMALL" --max_steps 12 --eval_strategy no --save_strategy no --logging_steps 1 --seed 7)
    for config in multi_gpu deepspeed_zero2; do
      train "nodes_${config}_one_host" 0,1 "accelerate_configs/$config.yaml" $fast "${run[@]}"
      port=$((29500 + RANDOM % 1000))
      rm -rf "$RUNS/nodes_${config}_two_machines"
      for rank in 0 1; do  # machine R sees GPU R only
        CUDA_VISIBLE_DEVICES=$rank timeout 420 accelerate launch --config_file "accelerate_configs/$config.yaml" \
          --num_machines 2 --num_processes 2 --machine_rank $rank --main_process_ip 127.0.0.1 --main_process_port $port \
          -m climate_sft.train --config $fast --model_name_or_path "$MODEL" --output_dir "$RUNS/nodes_${config}_two_machines" \
          --report_to none "${run[@]}" > "$OUT/nodes_${config}_machine$rank.log" 2>&1 &
      done
      wait
      cp "$RUNS/nodes_${config}_two_machines/training_stats.json" "$OUT/nodes_${config}_two_machines.json" 2>/dev/null
      compare "nodes_${config}_one_host" "nodes_${config}_two_machines" --loss-rtol 1e-3 --weight-atol 1e-3
    done
  else
    echo "multi needs one of: scaling qlora big resume nodes"; exit 1
  fi
  tail -n 3 "$OUT"/*.log
  # the device returns at most 8 files: everything in one archive
  (cd "$OUT" && tar czf "gpu-multi-$sub.tgz" --remove-files ./*.json ./*.log ./*.txt ./*.jsonl 2>/dev/null)
fi
ls -la "$OUT"
