"""Training speed and memory on one GPU: TRL's defaults against the package's recipes, same card, same run.

    python -m benchmarks.train_speed --model MODEL_DIR --corpus CORPUS_DIR --memory-cap-gib 79.2 \\
        --variant naive:8,16 --variant seed:64 --variant fast:64 --out results.json

Each variant is a shipped recipe plus overrides (VARIANTS), built through the package's own `build_trainer`,
except `naive`: TRL's plain `SFTTrainer` with TRL's defaults, built from the package's model loader and
LoRA config. For every batch size it trains `--warmup + --steps` optimizer steps and records, from the
package's `StepClock` (the same clock and token count as `training_stats.json`):

* real tokens/s: non-padding tokens of the timed steps over their wall time, after the warm-up steps;
* median step time, peak GPU memory allocated and reserved, every step's loss;
* MFU = tokens/s x F / 989 TFLOP/s (H100/H200 SXM dense bf16), F = (4 + 2 x recompute) x N_matmul FLOPs per
  token, N_matmul the weights of every matrix product (attention score FLOPs left out, so a lower bound):
  forward 2N, backward to the inputs 2N (frozen base weights get no weight gradient), recomputation under
  gradient checkpointing another 2N.

`--memory-cap-gib` limits PyTorch's allocator to that much of the card (`set_per_process_memory_fraction`):
79.2 GiB is what an H100 80GB HBM3 gives PyTorch, so on the bigger H200 every row is an H100 number.
A batch that runs out of memory, or whose step passes `--step-time-cap` seconds, ends that variant's sweep.
Memory and speed do not depend on the weights, so a randomly initialised model of the real architecture
(`scripts/random_model.py`) measures them honestly. Rows of a peer trainer (`benchmarks/peer_unsloth.py`)
measured in the same session join the table with `--include`.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch
import transformers
import trl
from transformers import TrainerCallback
from trl import SFTTrainer

from climate_sft.config import ModelArguments, RecipeError, load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.files import write_atomic
from climate_sft.modeling import load_model, load_tokenizer, lora_config
from climate_sft.run_stats import StepClock, reset_peak_memory, track_real_tokens
from climate_sft.trainer import build_trainer

DENSE_BF16_FLOPS = 989e12  # H100 and H200 SXM: the same Hopper tensor cores

# name -> (shipped recipe, overrides); `naive` is built with TRL's plain SFTTrainer
VARIANTS = {
    # TRL defaults as users meet them: bfd packing (padding-free, long documents truncated), documents kept
    # apart by sdpa's dense block mask, bf16 adapters, none of the package's fixes.
    "naive": ("qlora_h100_bf16", ["--attn_implementation", "sdpa", "--packing_strategy", "bfd"]),
    "seed": ("qlora_h100", []),
    "bf16": ("qlora_h100_bf16", []),
    "fast": ("qlora_h100_fast", []),  # no recomputation since round 2 (2026-12-06)
    "fast_checkpointing": ("qlora_h100_fast", ["--gradient_checkpointing", "true"]),
    # levers (benchmarks/LEVERS_RESEARCH.md): recompute every other layer only; checkpoint boundaries in pinned
    # host memory (transformers' own offload); regional torch.compile of the decoder layers, no recomputation
    "fast_every_2nd_layer": (
        "qlora_h100_fast",
        ["--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs", '{"every_n_layers": 2}'],
    ),
    "fast_offload": (
        "qlora_h100_fast",
        ["--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs", '{"offload": true}'],
    ),
    "fast_compiled": ("qlora_h100_fast", ["--torch_compile", "true"]),
    # round 3 (benchmarks/README.md): FlashAttention-3, fused LoRA, fp8 base weights, overlapped offload (TRL's
    # activation_offloading: pinned host memory on a side stream, prefetched in backward)
    "fast_fa3": ("qlora_h100_fast", ["--flash_attention_impl", "FA3"]),
    "fast_fused_lora": ("qlora_h100_fast", ["--fused_lora", "true"]),
    "fast_fa3_fused": ("qlora_h100_fast", ["--flash_attention_impl", "FA3", "--fused_lora", "true"]),
    "fp8": ("qlora_h100_fp8", []),
    "fp8_tensorwise": ("qlora_h100_fp8", ["--fp8_scaling", "tensorwise"]),
    "bf16_base": ("qlora_h100_fp8", ["--fp8_base_weights", "false"]),  # fp8's reference: the same recipe in bf16
    "fast_offload_overlapped": (
        "qlora_h100_fast",
        ["--gradient_checkpointing", "true", "--activation_offloading", "true"],
    ),
    "fp8_offload_overlapped": (
        "qlora_h100_fp8",
        ["--gradient_checkpointing", "true", "--activation_offloading", "true"],
    ),
}


class StepTimeCap(TrainerCallback):
    """Stops a run after a step slower than `seconds` (a batch that slow ends the sweep)."""

    def __init__(self, clock: StepClock, seconds: float | None):
        self.clock, self.seconds, self.exceeded = clock, seconds, False

    def on_step_end(self, args, state, control, **kwargs):
        steps = self.clock.step_seconds()
        if self.seconds and steps and steps[-1] > self.seconds:
            self.exceeded = control.should_training_stop = True


class StepProfiler(TrainerCallback):
    """torch.profiler over the last timed steps; the kernel tables go to `path`."""

    def __init__(self, start_step: int, path: Path):
        self.start_step, self.path, self.profiler = start_step, path, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start_step and self.profiler is None:
            self.profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            )
            self.profiler.__enter__()

    def on_train_end(self, args, state, control, **kwargs):
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            averages = self.profiler.key_averages()
            gpu = averages.table(sort_by="self_device_time_total", row_limit=40)
            cpu = averages.table(sort_by="self_cpu_time_total", row_limit=25)
            self.path.write_text(gpu + "\n\n" + cpu)


def matmul_params(config) -> int:
    """Weights of the matrix products per token: attention and MLP projections of every layer, and the LM head."""
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return config.num_hidden_layers * per_layer + h * config.vocab_size


def naive_trainer(recipe, corpus, tokenizer, callbacks) -> SFTTrainer:
    """TRL's own SFTTrainer on the recipe, as a user without this package would build it."""
    trainer = SFTTrainer(
        model=load_model(recipe.model),
        args=recipe.training,
        train_dataset=corpus["train"].select_columns(["text"]),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.model),
        callbacks=callbacks,
    )
    track_real_tokens(trainer)
    return trainer


def enough_documents(corpus, steps: int, batch: int, max_length: int) -> dict:
    """The first training documents that fill the steps (tokenizing the rest would be timed by nobody)."""
    chars_needed = 4 * 1.3 * steps * batch * max_length  # about 4 characters a token, 30 % to spare
    running = itertools.accumulate(corpus["train"]["characters"])
    count = next((i for i, chars in enumerate(running, 1) if chars >= chars_needed), len(corpus["train"]))
    return {"train": corpus["train"].select(range(count)), "validation": corpus["validation"]}


def run_point(variant: str, batch: int, args, corpus, tokenizer) -> dict:
    """One (variant, batch) measurement."""
    recipe_name, overrides = VARIANTS[variant]
    steps = args.warmup + args.steps
    common = [
        "--model_name_or_path",
        args.model,
        "--corpus_dir",
        args.corpus,
        "--max_length",
        str(args.max_length),
        "--output_dir",
        str(Path(args.workdir) / variant),
        "--max_steps",
        str(steps),
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        str(batch),
        "--effective_batch_size",
        str(batch),
        "--dataloader_num_workers",
        "2",
        "--disable_tqdm",
        "true",
    ]
    result = {"variant": variant, "recipe": recipe_name, "overrides": overrides + args.override, "batch": batch}
    trainer = None
    try:
        recipe = load_recipe(recipe_name, common + overrides + args.override)
        clock = StepClock()
        cap = StepTimeCap(clock, args.step_time_cap)
        callbacks = [clock, cap]
        if args.profile == f"{variant}:{batch}":
            callbacks.append(StepProfiler(steps - 2, args.out.with_name(f"profile_{variant}_{batch}.txt")))
        subset = enough_documents(corpus, steps, batch, args.max_length)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        reset_peak_memory()
        build = naive_trainer if variant == "naive" else build_trainer
        trainer = build(recipe, subset, tokenizer, callbacks)
        trainer.train()
        checkpointing = bool(recipe.training.gradient_checkpointing)
        every_n = (recipe.training.gradient_checkpointing_kwargs or {}).get("every_n_layers", 1)
        tokens_per_s = clock.tokens_per_second(skip=args.warmup)
        timed_tokens = clock.step_tokens()[args.warmup :]
        result.update(
            status="too slow" if cap.exceeded else "ok",
            tokens_per_step=round(sum(timed_tokens) / len(timed_tokens)) if timed_tokens else None,
            median_step_s=round(clock.median_step_seconds(skip=args.warmup) or clock.step_seconds()[-1], 4),
            tokens_per_s=round(tokens_per_s, 1) if tokens_per_s else None,
            mfu=round(
                tokens_per_s
                * (4 + 2 / every_n if checkpointing else 4)
                * matmul_params(trainer.model.config)
                / DENSE_BF16_FLOPS,
                4,
            )
            if tokens_per_s
            else None,
            gradient_checkpointing=checkpointing,
            attn_implementation=recipe.model.attn_implementation,
            precision=recipe.training.precision,
            peak_allocated_gb=_gib(torch.cuda.max_memory_allocated) if torch.cuda.is_available() else None,
            peak_reserved_gb=_gib(torch.cuda.max_memory_reserved) if torch.cuda.is_available() else None,
            losses=[round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
            kernel_levers=getattr(trainer, "kernel_levers", None),
        )
    except torch.OutOfMemoryError:
        result["status"] = "out of memory"
    except Exception as error:  # one broken variant must not cost the rest of a device session's sweep
        result["status"] = f"error: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
    finally:
        del trainer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def _gib(reading) -> float:
    return round(reading() / 2**30, 2)


def cap_memory(gib: float | None) -> dict | None:
    """Limit PyTorch's allocator to `gib` of the card, as if it were a smaller one."""
    if not gib or not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    return {
        "cap_gib": gib,
        "card_total_gib": round(total / 2**30, 2),
        "how": "torch.cuda.set_per_process_memory_fraction before the first allocation",
    }


def table(results: list[dict]) -> str:
    lines = [
        f"{'variant':28s} {'batch':>5s} {'tokens/s':>9s} {'step s':>7s} {'MFU':>6s} {'alloc GB':>8s} {'resv GB':>8s}"
    ]
    for r in results:
        if r["status"] == "ok":
            lines.append(
                f"{r['variant']:28s} {r['batch']:5d} {r['tokens_per_s']:9.0f} {r['median_step_s']:7.3f} "
                f"{(r.get('mfu') or 0):6.1%} {r['peak_allocated_gb'] or 0:8.1f} {r['peak_reserved_gb'] or 0:8.1f}"
            )
        else:
            lines.append(f"{r['variant']:28s} {r['batch']:5d} {r['status']}")
    return "\n".join(lines)


def check_variants(specs: list[str], overrides: list[str]) -> None:
    """Load every variant's recipe with its overrides (a typo in a flag fails here, not on the GPU) and print them."""
    for spec in specs:
        name, _, batches = spec.partition(":")
        recipe_name, variant_overrides = VARIANTS[name]
        try:
            recipe = load_recipe(recipe_name, variant_overrides + overrides)
        except RecipeError as error:
            sys.exit(f"variant {name}: {error}")
        model = recipe.model
        print(
            f"{name:26s} batches {batches:8s} {recipe_name}: checkpointing={recipe.training.gradient_checkpointing} "
            f"offload={recipe.training.activation_offloading} fp8={model.fp8_base_weights and model.fp8_scaling} "
            f"fused_lora={model.fused_lora} flash={model.flash_attention_impl}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (e.g. a random-init Llama-3.2-3B); required to measure")
    parser.add_argument("--corpus", help="corpus folder (python -m benchmarks.bench_corpus); required to measure")
    parser.add_argument("--variant", action="append", default=[], help="NAME:B1,B2,... (see VARIANTS)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--override", action="append", default=[], help="extra recipe flag for every variant")
    parser.add_argument("--memory-cap-gib", type=float, default=None, help="79.2 emulates an H100 80GB")
    parser.add_argument("--step-time-cap", type=float, default=None, help="seconds; a slower step ends the sweep")
    parser.add_argument("--workdir", default="runs/bench")
    parser.add_argument("--profile", default=None, help="VARIANT:BATCH whose last two steps get a kernel profile")
    parser.add_argument("--include", action="append", type=Path, default=[], help="peer rows (JSON) to add")
    parser.add_argument("--out", type=Path, help="results file; required to measure")
    parser.add_argument("--check-variants", action="store_true", help="load every variant's recipe, measure nothing")
    args = parser.parse_args(argv)
    args.override = [x for pair in args.override for x in pair.split(" ", 1)]
    unknown = [spec for spec in args.variant if spec.partition(":")[0] not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    bad_batches = [spec for spec in args.variant if not all(b.isdigit() for b in spec.partition(":")[2].split(","))]
    if bad_batches:
        parser.error(f"variant {bad_batches[0]!r}: write NAME:B1,B2 with whole batch sizes")
    if args.check_variants:
        check_variants(args.variant, args.override)
        return
    missing = [flag for flag in ("model", "corpus", "out") if getattr(args, flag) is None]
    if missing:
        parser.error(f"--{missing[0]} is required to measure")

    cap = cap_memory(args.memory_cap_gib)
    corpus = load_corpus(args.corpus)
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=args.model))
    peers = [row for path in args.include for row in json.loads(path.read_text())["results"]]
    record = {
        "command": " ".join(["python -m benchmarks.train_speed", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "memory_cap": cap,
        "allocator": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default"),
        "model": "random-init weights of the model folder's architecture (scripts/random_model.py)",
        "max_length": args.max_length,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, trl)},
        "mfu_formula": "tokens/s x (4 + 2 x share of layers recomputed) x N_matmul / 989e12",
        "results": peers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.variant:
        name, _, batches = spec.partition(":")
        for batch in [int(b) for b in batches.split(",")]:
            result = run_point(name, batch, args, corpus, tokenizer)
            results.append(result)
            print(json.dumps(result), flush=True)
            # written after every row: a sweep cut short by a time limit keeps what it measured
            write_atomic(args.out, json.dumps(record | {"results": results + peers}, indent=2) + "\n")
            if result["status"] != "ok":
                break
    print(table(results + peers))


if __name__ == "__main__":
    main()
