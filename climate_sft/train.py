"""Stage 4: recipe + corpus -> trained LoRA adapter and the numbers of the run.

    climate-sft train --config recipes/smollm2_cpu.yaml [--dry-run] [--key value ...]
    accelerate launch --config_file accelerate_configs/single_h100.yaml -m climate_sft.train --config RECIPE

Reads top to bottom: recipe -> logging -> corpus -> tokenizer -> (dry run stops here) -> batch-size search
(if asked) -> model and trainer -> train (resuming from the newest complete checkpoint) -> save adapter and
training_stats.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import TrainerCallback
from trl import SFTTrainer

from climate_sft import UserError
from climate_sft.config import Recipe, RecipeError, known_keys, load_recipe, resolved_values
from climate_sft.corpus import load_corpus, write_atomic
from climate_sft.run_stats import synchronize

logger = logging.getLogger("climate_sft")

# Steps left out of the steady-state speed: the first ones pay for allocator growth and kernel autotuning.
WARMUP_STEPS = 3


class ClimateSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with fp32 adapters and a count of the real (non-padding) tokens trained on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # TRL 1.16 casts QLoRA adapters to bf16. Under fp16 mixed precision the grad scaler then fails at the
        # first step (it cannot unscale bf16 grads), and on CPU bf16 adapters run slow bf16 matmuls. Trainable
        # parameters belong in fp32 under autocast; they are a few MB.
        # DeepSpeed and FSDP keep their own fp32 master weights and need one dtype per shard (TRL #6089).
        if not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            for param in self.model.parameters():
                if param.requires_grad and param.dtype != torch.float32:
                    param.data = param.data.float()
        self.real_tokens = 0

    def training_step(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        # padding-free batches carry no padding at all; padded ones mark it in the attention mask
        self.real_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        return super().training_step(model, inputs, *args, **kwargs)


class RunStatsCallback(TrainerCallback):
    """Wall time of every optimizer step (device synchronized) and every logged loss, as the log lines."""

    def __init__(self):
        self.step_seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.step_seconds.append(time.perf_counter() - self._start)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items()}
            logger.info("step %d: %s", state.global_step, json.dumps(shown))


def setup_logging(output_dir: Path, main_process: bool) -> None:
    """One set of lines, on the console and in output_dir/train.log; transformers' own lines included."""
    import datasets
    import transformers

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "train.log", encoding="utf-8"))
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if main_process else logging.WARNING,
        handlers=handlers,
        force=True,
    )
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()


def peak_memory() -> dict:
    if torch.cuda.is_available():
        return {
            "device": torch.cuda.get_device_name(),
            "peak_gpu_memory_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "peak_gpu_memory_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 3),
        }
    return {
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing. trainer_state.json is written last, so a folder
    without it was cut off mid-save (transformers' get_last_checkpoint would pick it and fail to resume)."""
    done = [p.parent for p in output_dir.glob("checkpoint-*/trainer_state.json") if p.parent.name[11:].isdigit()]
    return str(max(done, key=lambda p: int(p.name[11:]))) if done else None


def apply_effective_batch(recipe: Recipe, world_size: int) -> None:
    """Derive gradient accumulation from `effective_batch_size`, which must split evenly."""
    target = recipe.corpus.effective_batch_size
    if not target:
        return
    per_step = recipe.training.per_device_train_batch_size * world_size
    if target % per_step:
        raise RecipeError(
            f"{recipe.path}: effective_batch_size {target} is not a multiple of per_device_train_batch_size "
            f"{recipe.training.per_device_train_batch_size} x {world_size} process(es)"
        )
    recipe.training.gradient_accumulation_steps = target // per_step


def token_stats(recipe: Recipe, corpus, tokenizer) -> dict:
    from climate_sft.packing import packing_stats, tokenize_documents

    t = recipe.training
    stats = {}
    for split in ("train", recipe.corpus.eval_split):
        tokenized = tokenize_documents(corpus[split], tokenizer)
        stats[split] = packing_stats(tokenized, t.max_length, t.packing_strategy, t.per_device_train_batch_size)
    return stats


def dry_run(recipe: Recipe, corpus, tokenizer) -> None:
    print(f"# resolved recipe {recipe.path}")
    print(yaml.safe_dump(resolved_values(recipe), sort_keys=False).rstrip())
    print(f"# corpus {recipe.corpus.corpus_dir}: tokens after packing to {recipe.training.max_length} "
          f"({recipe.training.packing_strategy})")
    for split, stats in token_stats(recipe, corpus, tokenizer).items():
        print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    print("dry run: recipe valid, no model weights loaded")


def out_of_memory_message(recipe: Recipe) -> str:
    t = recipe.training
    batch, accumulation = t.per_device_train_batch_size, t.gradient_accumulation_steps
    smaller = max(1, batch // 2)
    return (
        f"out of GPU memory at per_device_train_batch_size={batch} (max_length {t.max_length}); try "
        f"--per_device_train_batch_size {smaller} --gradient_accumulation_steps {accumulation * batch // smaller} "
        "(same effective batch), or per_device_train_batch_size: auto; earlier checkpoints are intact"
    )


def build_trainer(recipe: Recipe, corpus, tokenizer, callbacks=(), model=None, trainer_class=None):
    """The trainer for a recipe; `model` reuses an already adapted (PEFT) model, as benchmarks do."""
    from climate_sft.modeling import load_model, lora_config
    from climate_sft.packing import VARLEN

    if recipe.model.attn_implementation is None and recipe.training.packing:
        # Packed batches go padding-free: the varlen kernel keeps their documents apart at fused-kernel speed,
        # where sdpa would build a mask quadratic in the whole batch (see packing.py).
        recipe.model.attn_implementation = VARLEN
    return (trainer_class or ClimateSFTTrainer)(
        model=model if model is not None else load_model(recipe.model),
        args=recipe.training,
        train_dataset=corpus["train"].select_columns(["text"]),
        eval_dataset=corpus[recipe.corpus.eval_split].select_columns(["text"]),
        processing_class=tokenizer,
        peft_config=None if model is not None else lora_config(recipe.model),
        callbacks=list(callbacks),
    )


def training_stats(recipe, trainer, timer: RunStatsCallback, train_seconds: float, search, tokens) -> dict:
    t, state = recipe.training, trainer.state
    world = trainer.accelerator.num_processes
    real_tokens = int(trainer.accelerator.reduce(torch.tensor(trainer.real_tokens, device=trainer.args.device), "sum"))
    steady = timer.step_seconds[WARMUP_STEPS:] or timer.step_seconds
    tokens_per_step = real_tokens / max(1, len(timer.step_seconds))
    losses = [{"step": e["step"], "loss": e["loss"]} for e in state.log_history if "loss" in e]
    eval_losses = [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in state.log_history if "eval_loss" in e]
    return {
        "recipe": recipe.path,
        "model": recipe.model.model_name_or_path,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "world_size": world,
        "effective_batch_size": t.per_device_train_batch_size * t.gradient_accumulation_steps * world,
        "batch_size_search": search,
        "max_length": t.max_length,
        "packing_strategy": t.packing_strategy if t.packing else None,
        "attn_implementation": recipe.model.attn_implementation,
        "precision": "fp16" if t.fp16 else "bf16" if t.bf16 else "fp32",
        "steps": state.global_step,
        "steps_this_run": len(timer.step_seconds),
        "epochs": round(state.epoch or 0.0, 3),
        "tokens_seen": real_tokens,
        "train_seconds": round(train_seconds, 2),
        "tokens_per_second": round(real_tokens / train_seconds, 1) if train_seconds else None,
        "warmup_steps_excluded": WARMUP_STEPS if timer.step_seconds[WARMUP_STEPS:] else 0,
        "median_step_seconds": round(statistics.median(steady), 4) if steady else None,
        "steady_tokens_per_second": round(tokens_per_step / statistics.median(steady), 1) if steady else None,
        **peak_memory(),
        "step_seconds": [round(x, 4) for x in timer.step_seconds],
        "final_loss": losses[-1]["loss"] if losses else None,
        "losses": losses,
        "eval_losses": eval_losses,
        "packing": tokens,
        "versions": {m.__name__: m.__version__ for m in _versions()},
    }


def _versions():
    import accelerate
    import peft
    import transformers
    import trl

    return (torch, transformers, trl, peft, accelerate)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="climate-sft train", epilog="Any other --key value pair overrides that recipe key (see --help-keys)."
    )
    parser.add_argument("--config", help="recipe YAML, e.g. recipes/smollm2_cpu.yaml")
    parser.add_argument("--dry-run", action="store_true", help="validate, print config and token stats, stop")
    parser.add_argument("--help-keys", action="store_true", help="list every recipe key and exit")
    args, overrides = parser.parse_known_args(argv)
    if args.help_keys:
        print(known_keys())
        return
    if not args.config:
        parser.error("--config RECIPE is required")
    try:
        run(args.config, overrides, args.dry_run)
    except UserError as error:
        print(f"climate-sft train: error: {error}", file=sys.stderr)
        sys.exit(2)


def run(config: str, overrides: list[str], dry: bool = False) -> dict | None:
    from accelerate import PartialState

    from climate_sft.batch_size import find_batch_size
    from climate_sft.modeling import load_tokenizer

    # 1. recipe, validated before anything heavy loads
    recipe = load_recipe(config, overrides)
    state = PartialState()
    output_dir = Path(recipe.training.output_dir)
    setup_logging(output_dir, state.is_main_process and not dry)

    # 2. corpus and tokenizer
    corpus = load_corpus(recipe.corpus.corpus_dir)
    tokenizer = load_tokenizer(recipe.model)
    if recipe.corpus.auto_batch_size and not recipe.corpus.effective_batch_size:
        raise RecipeError(f"{recipe.path}: per_device_train_batch_size: auto needs effective_batch_size: N to keep")
    if not recipe.corpus.auto_batch_size:
        apply_effective_batch(recipe, state.num_processes)
    if dry:
        dry_run(recipe, corpus, tokenizer)
        return None

    # 3. batch size, model and trainer
    search = None
    if recipe.corpus.auto_batch_size:
        search = find_batch_size(recipe, corpus, tokenizer, state.num_processes)
        logger.info("batch-size search: %s", search)
    tokens = token_stats(recipe, corpus, tokenizer)
    logger.info("packing (%s, max_length %d): %s", recipe.training.packing_strategy, recipe.training.max_length, tokens)
    timer = RunStatsCallback()
    trainer = build_trainer(recipe, corpus, tokenizer, callbacks=[timer])
    if state.is_main_process:
        write_atomic(output_dir / "recipe.yaml", yaml.safe_dump(resolved_values(recipe), sort_keys=False))

    # 4. train, resuming where an interrupted run stopped
    checkpoint = recipe.training.resume_from_checkpoint or last_complete_checkpoint(output_dir)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError:
        raise RecipeError(out_of_memory_message(recipe)) from None
    train_seconds = time.perf_counter() - start

    # 5. adapter, tokenizer and the numbers
    if trainer.is_fsdp_enabled:
        # checkpoints stay sharded (fast to write, resumable); the final adapter is gathered whole so that it
        # loads on one device like any other
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(output_dir))
    stats = training_stats(recipe, trainer, timer, train_seconds, search, tokens)
    if state.is_main_process:
        if stats["steps_this_run"] == 0 and (output_dir / "training_stats.json").exists():
            logger.info("nothing left to train: %s already holds a finished run", output_dir)
        else:
            write_atomic(output_dir / "training_stats.json", json.dumps(stats, indent=2) + "\n")
            logger.info(
                "done: %d steps, %.1f tokens/s, effective batch %d, %s",
                stats["steps"], stats["tokens_per_second"] or 0, stats["effective_batch_size"], peak_memory(),
            )
    return stats


if __name__ == "__main__":
    main()
