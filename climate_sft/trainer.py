"""Stage 4: recipe + corpus + tokenizer -> TRL's SFTTrainer, ready to train; and the numbers of a finished run.

`train.py` (a run), `batch_size.py` (trial steps) and the benchmarks all build their trainer here, so what
they measure is what a user runs.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import tempfile
from pathlib import Path

import accelerate
import peft
import torch
import transformers
import trl
from trl import SFTTrainer

from climate_sft.config import Recipe, RecipeError
from climate_sft.modeling import apply_kernel_levers, choose_attention, load_model, lora_config
from climate_sft.run_stats import StepClock, peak_memory, reset_peak_memory, track_real_tokens

# Steps left out of the steady-state speed: the first ones pay for allocator growth and kernel autotuning.
WARMUP_STEPS = 3


class _AtMaxSteps(Exception):
    """Raised before a resumed run's first step when its checkpoint has reached max_steps already."""


class _NoStepPastMaxSteps(transformers.TrainerCallback):
    """transformers resumes a checkpoint saved at max_steps into its epoch loop and trains one more step before it
    checks max_steps (when max_steps is not a whole number of epochs): stop before that step instead."""

    def on_epoch_begin(self, args, state, control, **kwargs):
        if 0 < state.max_steps <= state.global_step:
            raise _AtMaxSteps


class NonFiniteTraining(RecipeError):
    """The loss, a gradient or a trainable weight became NaN or infinite: the run stops and reports no result."""


def _diverged(what: str, step: int, learning_rate: float) -> NonFiniteTraining:
    return NonFiniteTraining(
        f"training diverged: {what} at step {step}; nothing was saved as a result. Lower learning_rate (now "
        f"{learning_rate:g}) or max_grad_norm, or use bf16 instead of fp16, and rerun"
    )


class _StopOnNonFinite(transformers.TrainerCallback):
    """Every logged loss and gradient norm must be finite: a NaN run stops at the first log that shows it, before
    the checkpoint of that step is written (the Trainer logs, then saves)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise _diverged(f"{key} is {value}", state.global_step, args.learning_rate)


def check_finite_weights(trainer: SFTTrainer) -> None:
    """The trainable weights are finite before they are saved as the run's adapter (a run shorter than one logging
    interval shows no loss to check)."""
    for name, param in trainer.model.named_parameters():
        if param.requires_grad and param.numel() and not torch.isfinite(param.detach()).all():
            raise _diverged(f"weight {name} is not finite", trainer.state.global_step, trainer.args.learning_rate)


class ClimateSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with fp32 adapters and transformers counting the real (non-padding) tokens."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(_NoStepPastMaxSteps())
        self.add_callback(_StopOnNonFinite())
        # TRL 1.16 casts QLoRA adapters to bf16. Under fp16 mixed precision the grad scaler then fails at the
        # first step (it cannot unscale bf16 grads), and on CPU bf16 adapters run slow bf16 matmuls. Trainable
        # parameters belong in fp32 under autocast; they are a few MB.
        # DeepSpeed and FSDP keep their own fp32 master weights and need one dtype per shard (TRL #6089).
        if not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            for param in self.model.parameters():
                if param.requires_grad and param.dtype != torch.float32:
                    param.data = param.data.float()
        track_real_tokens(self)

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        except _AtMaxSteps:  # the checkpoint's weights and state are loaded: the run is as it finished
            return None


def build_trainer(recipe: Recipe, corpus, tokenizer, callbacks=()) -> ClimateSFTTrainer:
    """The trainer for a recipe: base model (quantized if asked), LoRA from the recipe, the corpus's splits."""
    recipe.model.attn_implementation = choose_attention(recipe.model, recipe.training.packing)
    trainer = ClimateSFTTrainer(
        model=load_model(recipe.model),
        args=recipe.training,
        train_dataset=corpus["train"].select_columns(["text"]),
        eval_dataset=corpus[recipe.data.eval_split].select_columns(["text"]),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.model),
        callbacks=list(callbacks),
    )
    trainer.kernel_levers = apply_kernel_levers(trainer.model, recipe.model)
    return trainer


# --- the largest batch that fits, effective batch kept (`per_device_train_batch_size: auto`) ---------------
# transformers' `auto_find_batch_size` shrinks the batch on OOM and leaves gradient accumulation alone, so the
# effective batch, and with it the learning dynamics, silently change. Here the candidates are the divisors of
# the per-device share of `effective_batch_size`, each tried with two real optimizer steps through the trainer
# above, and accumulation makes up the rest.


def memory_budget_bytes(margin: float) -> int | None:
    """The share of GPU memory a batch may fill; None on CPU (no limit to test against)."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[1] * margin)


def run_trial(recipe: Recipe, corpus, tokenizer, batch_size: int) -> int:
    """Two optimizer steps at `batch_size`; returns peak reserved GPU memory in bytes (0 on CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = dataclasses.replace(
            recipe.training,
            output_dir=tmp,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            effective_batch_size=None,
            auto_batch_size=False,
            max_steps=2,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
        )
        trainer = None
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            reset_peak_memory()
            trainer = build_trainer(dataclasses.replace(recipe, training=args), corpus, tokenizer)
            trainer.train()
            return torch.cuda.max_memory_reserved() if torch.cuda.is_available() else 0
        finally:
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def find_batch_size(recipe: Recipe, corpus, tokenizer, world_size: int = 1) -> dict:
    """Search, then set the recipe's batch size and accumulation. Returns what was tried and chosen."""
    target = recipe.training.effective_batch_size
    if not target or target % world_size:
        raise RecipeError(
            f"{recipe.path}: key 'effective_batch_size': the batch-size search needs it, a multiple of "
            f"{world_size} process(es)"
        )
    per_device = target // world_size
    candidates = [d for d in range(1, per_device + 1) if per_device % d == 0]
    budget = memory_budget_bytes(recipe.training.batch_size_margin)
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
        "margin": recipe.training.batch_size_margin,
        "tried": {str(k): tried[k] for k in sorted(tried)},
        "per_device_train_batch_size": chosen,
        "gradient_accumulation_steps": per_device // chosen,
        "world_size": world_size,
        "effective_batch_size": chosen * (per_device // chosen) * world_size,
    }


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing. trainer_state.json is written last, so a folder
    without it, or with it empty or cut off, was interrupted mid-save (transformers' get_last_checkpoint would
    pick it and fail to resume)."""
    done = []
    for state in output_dir.glob("checkpoint-*/trainer_state.json"):
        step = state.parent.name.removeprefix("checkpoint-")
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if step.isdigit():
            done.append((int(step), state.parent))
    return str(max(done)[1]) if done else None


def out_of_memory_message(recipe: Recipe) -> str:
    t = recipe.training
    batch, accumulation = t.per_device_train_batch_size, t.gradient_accumulation_steps
    smaller = max(1, batch // 2)
    return (
        f"out of GPU memory at per_device_train_batch_size={batch} (max_length {t.max_length}); try "
        f"--per_device_train_batch_size {smaller} --gradient_accumulation_steps {accumulation * batch // smaller} "
        "(same effective batch), or per_device_train_batch_size: auto; earlier checkpoints are intact"
    )


def training_stats(recipe: Recipe, trainer: SFTTrainer, clock: StepClock, search: dict | None, packing: dict) -> dict:
    """Everything `training_stats.json` answers: batch, accumulation, memory, time, tokens/s, losses, versions.

    Totals cover the whole run, earlier segments of a resumed run included; `this_segment` is this process's.
    """
    t, state = recipe.training, trainer.state
    world = trainer.accelerator.num_processes
    segment = clock.segment()
    segments = [*clock.earlier, segment]
    seconds = sum(s["seconds"] for s in segments)
    tokens = state.num_input_tokens_seen
    steady = clock.tokens_per_second(skip=WARMUP_STEPS)
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
        "precision": t.precision,
        "kernel_levers": getattr(trainer, "kernel_levers", None),
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 3),
        "tokens_seen": tokens,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "segments": len(segments),
        "this_segment": {
            **segment,
            "seconds": round(segment["seconds"], 2),
            "warmup_steps_excluded": WARMUP_STEPS if segment["steps"] > WARMUP_STEPS else 0,
            "median_step_seconds": _rounded(clock.median_step_seconds(skip=WARMUP_STEPS), 4),
            "steady_tokens_per_second": _rounded(steady, 1),
            "step_seconds": [round(x, 4) for x in clock.step_seconds()],
            "step_tokens": clock.step_tokens(),
        },
        **peak_memory(),
        "final_loss": losses[-1]["loss"] if losses else None,
        "losses": losses,
        "eval_losses": eval_losses,
        "packing": packing,
        "versions": versions(),
    }


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def versions() -> dict[str, str]:
    return {m.__name__: m.__version__ for m in (torch, transformers, trl, peft, accelerate)}
