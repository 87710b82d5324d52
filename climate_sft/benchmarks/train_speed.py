"""Training speed and memory on one GPU: TRL's defaults against the package's recipes, same card, same run.

    python -m climate_sft.benchmarks.train_speed --model MODEL_DIR --corpus CORPUS_DIR \\
        --variant naive:2,4,8,16 --variant seed:8,16,32 --variant fast:4,8 --out results.json

Each variant is a recipe plus overrides (VARIANTS). For every batch size it trains `--warmup + --steps`
optimizer steps through the package's own trainer (TRL's plain `SFTTrainer` for `naive`) and records:

* real tokens/s: non-padding tokens of the timed steps over their wall time (device synchronized at every
  step end), after the warm-up steps;
* median step time, peak GPU memory allocated and reserved;
* MFU = tokens/s x F / 989 TFLOP/s (H100 SXM dense bf16), F = (4 + 2 x recompute) x N_matmul FLOPs per
  token, N_matmul the weights of every matrix product (attention score FLOPs left out, so a lower bound):
  forward 2N, backward to the inputs 2N (frozen base weights get no weight gradient), recomputation under
  gradient checkpointing another 2N.

A batch that runs out of memory ends that variant's sweep. Memory and speed do not depend on the weights,
so a randomly initialised model of the real architecture (climate_sft.random_model) measures them honestly.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from climate_sft.train import synchronize

RECIPES = Path(__file__).parents[2] / "recipes"
H100_BF16_DENSE_FLOPS = 989e12

# name -> (recipe, overrides, use TRL's plain SFTTrainer)
VARIANTS = {
    # TRL defaults as users meet them: bfd packing (padding-free, documents kept apart by a dense block
    # mask under sdpa), bf16 adapters, no package fixes.
    "naive": ("qlora_h100_bf16.yaml", ["--attn_implementation", "sdpa", "--packing_strategy", "bfd"], True),
    "seed": ("qlora_h100.yaml", [], False),
    "bf16": ("qlora_h100_bf16.yaml", [], False),
    "fast": ("qlora_h100_fast.yaml", [], False),
    "fast_no_checkpointing": ("qlora_h100_fast.yaml", ["--gradient_checkpointing", "false"], False),
    "fast_all_linear": ("qlora_h100_fast.yaml", ["--lora_target_modules", "[all-linear]"], False),
}
# Liger patches transformers' Llama classes for the whole process: run liger variants after the others
# (or in their own process), or the variants after them measure Liger too.


class StepClock(TrainerCallback):
    """Wall time and TRL's running token count at every optimizer step end."""

    def __init__(self):
        self.trainer = None
        self.marks: list[tuple[float, int]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.marks:
            synchronize()
            self.marks.append((time.perf_counter(), self.trainer._total_train_tokens))

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.marks.append((time.perf_counter(), self.trainer._total_train_tokens))


class StepProfiler(TrainerCallback):
    """torch.profiler over the last timed steps; the kernel table goes to `path` (for `--profile`)."""

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
            table = self.profiler.key_averages().table(sort_by="self_cuda_time_total", row_limit=40)
            cpu = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
            self.path.write_text(table + "\n\n" + cpu)


def matmul_params(config) -> int:
    """Weights of the matrix products per token: attention and MLP projections of every layer, and the LM head."""
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return config.num_hidden_layers * per_layer + h * config.vocab_size


def run_point(variant: str, batch: int, args, corpus, tokenizer, model=None):
    """One (variant, batch) measurement. Returns (result dict, the adapted model to reuse)."""
    from trl import SFTTrainer

    from climate_sft.config import load_recipe
    from climate_sft.train import build_trainer

    recipe_name, overrides, plain_trl = VARIANTS[variant]
    common = [
        "--model_name_or_path", args.model, "--corpus_dir", args.corpus, "--max_length", str(args.max_length),
        "--output_dir", str(Path(args.workdir) / variant), "--max_steps", str(args.warmup + args.steps),
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1",
        "--per_device_train_batch_size", str(batch), "--effective_batch_size", str(batch),
        "--dataloader_num_workers", "2", "--disable_tqdm", "true",
    ]
    recipe = load_recipe(RECIPES / recipe_name, common + overrides + args.override)
    # Only as many documents as the steps need (tokenizing and packing the rest would be timed by nobody).
    tokens_needed = 1.3 * (args.warmup + args.steps) * batch * args.max_length
    count, chars = 0, 0
    for count, n in enumerate(corpus["train"]["characters"], 1):
        chars += n
        if chars / 4 >= tokens_needed:
            break
    subset = {"train": corpus["train"].select(range(count)), recipe.corpus.eval_split: corpus[recipe.corpus.eval_split]}
    clock = StepClock()
    callbacks = [clock]
    if args.profile:
        callbacks.append(StepProfiler(args.warmup + args.steps - 2, args.out.with_name(f"profile_{variant}_{batch}.txt")))
    result = {"variant": variant, "recipe": recipe_name, "overrides": overrides + args.override, "batch": batch}
    trainer = None
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = build_trainer(recipe, subset, tokenizer, callbacks, model=model, trainer_class=SFTTrainer if plain_trl else None)
        clock.trainer = trainer
        trainer.train()
        model = trainer.model
        times = [b[0] - a[0] for a, b in zip(clock.marks, clock.marks[1:])][args.warmup :]
        tokens = [b[1] - a[1] for a, b in zip(clock.marks, clock.marks[1:])][args.warmup :]
        tokens_per_s = sum(tokens) / sum(times)
        checkpointing = bool(recipe.training.gradient_checkpointing)
        flops_per_token = (6 if checkpointing else 4) * matmul_params(model.config)
        result.update(
            status="ok",
            tokens_per_step=round(statistics.mean(tokens)),
            median_step_s=round(statistics.median(times), 4),
            tokens_per_s=round(tokens_per_s, 1),
            mfu=round(tokens_per_s * flops_per_token / H100_BF16_DENSE_FLOPS, 4),
            gradient_checkpointing=checkpointing,
            attn_implementation=recipe.model.attn_implementation,
            precision="fp16" if recipe.training.fp16 else "bf16" if recipe.training.bf16 else "fp32",
            peak_allocated_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
            peak_reserved_gb=round(torch.cuda.max_memory_reserved() / 2**30, 2) if torch.cuda.is_available() else None,
            final_loss=next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None),
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
    return result, model


def main(argv: list[str] | None = None) -> None:
    import transformers
    import trl

    from climate_sft.config import ModelArguments
    from climate_sft.corpus import load_corpus, write_atomic
    from climate_sft.modeling import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. a random-init Llama-3.2-3B)")
    parser.add_argument("--corpus", required=True, help="corpus folder (climate_sft.benchmarks.bench_corpus)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:B1,B2,... (see VARIANTS)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--override", action="append", default=[], help="extra recipe flag for every variant")
    parser.add_argument("--workdir", default="/tmp/climate-sft-bench")
    parser.add_argument("--profile", action="store_true", help="write a kernel profile of the last two steps")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.override = [x for pair in args.override for x in pair.split(" ", 1)]

    corpus = load_corpus(args.corpus)
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=args.model))
    results = []
    for spec in args.variant:
        name, _, batches = spec.partition(":")
        model = None
        for batch in [int(b) for b in batches.split(",")]:
            result, model = run_point(name, batch, args, corpus, tokenizer, model)
            results.append(result)
            print(json.dumps(result), flush=True)
            if result["status"] != "ok":
                break
        del model
        gc.collect()
    record = {
        "command": " ".join(["python -m climate_sft.benchmarks.train_speed", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "model": "random-init weights, architecture of " + str(args.model),
        "max_length": args.max_length,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, trl)},
        "mfu_formula": "tokens/s x (4 + 2*gradient_checkpointing) x N_matmul / 989e12",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(record, indent=2) + "\n")
    print(f"{'variant':18s} {'batch':>5s} {'tokens/s':>9s} {'step s':>7s} {'MFU':>6s} {'alloc GB':>8s} {'resv GB':>8s}")
    for r in results:
        if r["status"] == "ok":
            print(f"{r['variant']:18s} {r['batch']:5d} {r['tokens_per_s']:9.0f} {r['median_step_s']:7.3f} "
                  f"{r['mfu']:6.1%} {r['peak_allocated_gb'] or 0:8.1f} {r['peak_reserved_gb'] or 0:8.1f}")
        else:
            print(f"{r['variant']:18s} {r['batch']:5d} {r['status']}")


if __name__ == "__main__":
    main()
