"""The largest per-device batch that fits, with the effective batch size kept.

    climate-sft find-batch-size --config RECIPE     (prints and writes OUTPUT_DIR/batch_size.json)
    per_device_train_batch_size: auto               (in a recipe: the search runs before training)

transformers' `auto_find_batch_size` halves the batch on OOM and leaves gradient accumulation alone, so the
effective batch, and with it the learning dynamics, silently change. Here the candidates are the divisors of
the per-device share of `effective_batch_size`; each is tried with two real optimizer steps through the same
trainer the run uses (quantization, LoRA, checkpointing, kernels, optimizer state all included), and
gradient accumulation is set so that batch x accumulation x processes stays the requested effective batch.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import tempfile
from pathlib import Path

import torch

from climate_sft.config import Recipe, RecipeError


def memory_budget_bytes(margin: float) -> int | None:
    """The share of GPU memory a batch may fill; None on CPU (no limit to test against)."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[1] * margin)


def run_trial(recipe: Recipe, corpus, tokenizer, batch_size: int) -> int:
    """Two optimizer steps at `batch_size`; returns peak reserved GPU memory in bytes (0 on CPU)."""
    from climate_sft.train import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        args = dataclasses.replace(
            recipe.training,
            output_dir=tmp,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            max_steps=2,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
        )
        trial = dataclasses.replace(recipe, training=args)
        trainer = None
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            trainer = build_trainer(trial, corpus, tokenizer)
            trainer.train()
            return torch.cuda.max_memory_reserved() if torch.cuda.is_available() else 0
        finally:
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def find_batch_size(recipe: Recipe, corpus, tokenizer, world_size: int = 1) -> dict:
    """Search, then set the recipe's batch size and accumulation. Returns what was tried and chosen."""
    target = recipe.corpus.effective_batch_size
    if not target or target % world_size:
        raise RecipeError(f"{recipe.path}: the batch-size search needs effective_batch_size, a multiple of {world_size} process(es)")
    per_device = target // world_size
    candidates = [d for d in range(1, per_device + 1) if per_device % d == 0]
    budget = memory_budget_bytes(recipe.corpus.batch_size_margin)
    tried: dict[int, dict] = {}

    def fits(batch_size: int) -> bool:
        try:
            peak = run_trial(recipe, corpus, tokenizer, batch_size)
        except torch.OutOfMemoryError:
            tried[batch_size] = {"fits": False, "reason": "out of memory"}
            return False
        ok = budget is None or peak <= budget
        tried[batch_size] = {"fits": ok, "peak_gpu_memory_reserved_gb": round(peak / 2**30, 3)}
        return ok

    # Binary search over the divisors: fitting is monotonic in the batch size.
    lo, hi = -1, len(candidates)  # candidates[lo] fits (or none), candidates[hi] does not (or past the end)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            lo = mid
        else:
            hi = mid
    if lo < 0:
        raise RecipeError(
            f"{recipe.path}: even per_device_train_batch_size=1 does not fit at max_length "
            f"{recipe.training.max_length}: lower max_length, or turn on load_in_4bit / gradient_checkpointing"
        )
    chosen = candidates[lo]
    recipe.training.per_device_train_batch_size = chosen
    recipe.training.gradient_accumulation_steps = per_device // chosen
    return {
        "max_length": recipe.training.max_length,
        "memory_budget_gb": round(budget / 2**30, 3) if budget else None,
        "margin": recipe.corpus.batch_size_margin,
        "tried": {str(k): tried[k] for k in sorted(tried)},
        "per_device_train_batch_size": chosen,
        "gradient_accumulation_steps": per_device // chosen,
        "world_size": world_size,
        "effective_batch_size": chosen * (per_device // chosen) * world_size,
    }


def main(argv: list[str]) -> None:
    import argparse

    from accelerate import PartialState

    from climate_sft.config import load_recipe
    from climate_sft import UserError
    from climate_sft.corpus import load_corpus, write_atomic
    from climate_sft.modeling import load_tokenizer

    parser = argparse.ArgumentParser(prog="climate-sft find-batch-size", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe YAML; needs effective_batch_size")
    args, overrides = parser.parse_known_args(argv)
    try:
        recipe = load_recipe(args.config, overrides)
        corpus = load_corpus(recipe.corpus.corpus_dir)
        result = find_batch_size(recipe, corpus, load_tokenizer(recipe.model), PartialState().num_processes)
    except UserError as error:
        print(f"climate-sft find-batch-size: error: {error}", file=sys.stderr)
        sys.exit(2)
    for size, outcome in result["tried"].items():
        print(f"per_device_train_batch_size {size:>4s}: {outcome}")
    print(
        f"use per_device_train_batch_size: {result['per_device_train_batch_size']} with gradient_accumulation_steps: "
        f"{result['gradient_accumulation_steps']} (effective batch {result['effective_batch_size']})"
    )
    if PartialState().is_main_process:
        out = Path(recipe.training.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "batch_size.json", json.dumps(result, indent=2) + "\n")
