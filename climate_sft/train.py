"""The training entry point: a recipe in, a LoRA adapter and the numbers of the run out.

    climate-sft train --config qlora_h100 [--dry-run] [--key value ...]
    accelerate launch --config_file accelerate_configs/single_h100.yaml -m climate_sft.train --config RECIPE

Reads top to bottom: recipe -> logging -> corpus and tokenizer -> (dry run stops here) -> batch-size search (if
asked) -> trainer -> train, resuming from the newest complete checkpoint -> adapter and training_stats.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import datasets
import torch
import transformers
import yaml
from accelerate import PartialState

from climate_sft import error_boundary, take_debug_flag
from climate_sft.config import (
    RecipeError,
    RecipeParser,
    apply_effective_batch,
    load_recipe,
    preflight,
    resolved_values,
)
from climate_sft.corpus import load_corpus, small_test_split_note, split_record
from climate_sft.files import write_atomic
from climate_sft.launch import already_launched, die_with_parent
from climate_sft.mixing import mix_corpora
from climate_sft.model_card import hub_base_model, write_model_card
from climate_sft.modeling import load_tokenizer
from climate_sft.packing import encode_documents, split_token_stats
from climate_sft.run_stats import StepClock, peak_memory, reset_peak_memory
from climate_sft.trainer import (
    build_trainer,
    check_finite_weights,
    find_batch_size,
    last_complete_checkpoint,
    out_of_memory_message,
    training_stats,
)

logger = logging.getLogger("climate_sft")


class LogLines(transformers.TrainerCallback):
    """Every logged dict as one console and train.log line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items()}
            logger.info("step %d: %s", state.global_step, json.dumps(shown))


def setup_logging(output_dir: Path, main_process: bool) -> None:
    """One set of lines, on the console and in output_dir/train.log; transformers' own lines included."""
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


def dry_run(recipe, corpus, tokenizer, mixture: dict | None) -> None:
    print(f"# resolved recipe {recipe.path}")
    print(yaml.safe_dump(resolved_values(recipe), sort_keys=False).rstrip())
    for source in mixture["sources"] if mixture else []:
        print(
            f"# mix: {source['corpus_dir']}: {source['documents']} documents, {source['tokens']} tokens "
            f"({source['share']:.1%} of training tokens; share asked {source['weight']:.1%})"
        )
    t = recipe.training
    print(f"# corpus {recipe.data.corpus_dir}: tokens after packing to {t.max_length} ({t.packing_strategy})")
    for split, stats in split_token_stats(corpus, ("train", recipe.data.eval_split), tokenizer, t).items():
        print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    sizes = {
        split: (len(ds), sum(map(len, encode_documents(list(ds["text"]), tokenizer)))) for split, ds in corpus.items()
    }
    print("# splits (whole documents): " + "; ".join(f"{s} {d} documents, {n} tokens" for s, (d, n) in sizes.items()))
    small = small_test_split_note(*sizes.get(recipe.data.test_split, (0, 0)))
    if small:
        print(f"# note: {small}")
    print("dry run: recipe valid, no model weights loaded")


def record_portable_base(trainer, model_args) -> None:
    """The adapter names its base by hub id, not by the local folder or GGUF cache it was loaded from, so that it
    loads anywhere (PEFT records the path as given otherwise)."""
    hub_id = hub_base_model(model_args)
    if hub_id is None:
        logger.warning(
            "base model %s has no hub id (recipe key base_model_id): the adapter records the local path",
            model_args.model_name_or_path,
        )
        return
    for peft_config in getattr(trainer.model, "peft_config", {}).values():
        peft_config.base_model_name_or_path = hub_id


# The keys that decide what the adapter is: a run folder's adapter and checkpoints belong to these values.
MODEL_SHAPING_KEYS = (
    "model_name_or_path",
    "dtype",
    "use_peft",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "lora_modules_to_save",
    "use_rslora",
    "use_dora",
    "load_in_4bit",
    "load_in_8bit",
    "bnb_4bit_quant_type",
    "use_bnb_nested_quant",
    "max_length",
    "packing",
    "packing_strategy",
)
RUN_RESULTS = ("eval_results.json", "samples.json", "REPORT.md", "training_stats.json")


def same_run_problem(output_dir: Path, values: dict, record: dict) -> str | None:
    """What differs between the run already in `output_dir` (its recipe.yaml and data.json) and this one: the first
    model-shaping key, or the documents of a split; None when they agree or the folder holds no run."""
    try:
        before = yaml.safe_load((output_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
        documents = json.loads((output_dir / "data.json").read_text(encoding="utf-8"))["splits"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return f"{output_dir}: its recipe.yaml or data.json is damaged, so the run in it cannot be checked"
    for key in MODEL_SHAPING_KEYS:
        if before.get(key) != values.get(key):
            return f"{output_dir} holds a run with {key}: {before.get(key)!r}, this recipe gives {values.get(key)!r}"
    for split, now in record["splits"].items():
        if documents.get(split) != now:
            return (
                f"{output_dir} holds a run trained on other documents (its {split} split differs from "
                f"{record['corpus_dir']} as it is now)"
            )
    return None


class RecordRun(transformers.TrainerCallback):
    """Writes recipe.yaml and data.json once training begins, that is after a resumed checkpoint has loaded: a
    resume that fails leaves the folder describing the adapter that is in it."""

    def __init__(self, output_dir: Path, values: dict, record: dict, fresh: bool):
        self.output_dir, self.values, self.record, self.fresh = output_dir, values, record, fresh

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.fresh:  # asked for: the earlier run's checkpoints and results no longer describe this folder
            for name in RUN_RESULTS:
                (self.output_dir / name).unlink(missing_ok=True)
            for checkpoint in self.output_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint, ignore_errors=True)
        write_atomic(self.output_dir / "recipe.yaml", yaml.safe_dump(self.values, sort_keys=False))
        # which documents trained, validated and are held out: `climate-sft eval` scores exactly these
        write_atomic(self.output_dir / "data.json", json.dumps(self.record) + "\n")


def checkpoint_to_resume(recipe, output_dir: Path, fresh: bool) -> str | None:
    """The checkpoint this run continues from, or None; one line when it is past this recipe's max_steps."""
    if fresh:
        return None
    checkpoint = recipe.training.resume_from_checkpoint or last_complete_checkpoint(output_dir)
    if checkpoint and recipe.training.max_steps > 0:
        try:
            step = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RecipeError(f"{checkpoint}/trainer_state.json is damaged: delete that checkpoint folder") from None
        if step > recipe.training.max_steps:
            raise RecipeError(
                f"key 'max_steps': {recipe.training.max_steps} is below the {step} steps {checkpoint} has trained; "
                "raise max_steps, or train into a new output_dir"
            )
    return checkpoint


def run(config: str, overrides: list[str], dry: bool = False, fresh: bool = False) -> dict | None:
    # 1. recipe, checked before anything heavy loads
    recipe = load_recipe(config, overrides)
    preflight(recipe)
    state = PartialState()
    output_dir = Path(recipe.training.output_dir)
    setup_logging(output_dir, state.is_main_process and not dry)

    # 2. corpus and tokenizer
    corpus = load_corpus(recipe.data.corpus_dir)
    tokenizer = load_tokenizer(recipe.model)
    mixture = None
    if recipe.data.mix:
        corpus, mixture = mix_corpora(recipe.data.corpus_dir, corpus, recipe.data.mix, tokenizer, recipe.training.seed)
        logger.info("training mixture: %s", mixture["sources"])
    if not recipe.training.auto_batch_size:
        apply_effective_batch(recipe, state.num_processes)
    if dry:
        dry_run(recipe, corpus, tokenizer, mixture)
        return None

    # 3. batch size, then the trainer
    search = None
    if recipe.training.auto_batch_size:
        search = find_batch_size(recipe, corpus, tokenizer, state.num_processes)
        logger.info("batch-size search: %s", search)
    packing = split_token_stats(corpus, ("train", recipe.data.eval_split), tokenizer, recipe.training)
    logger.info(
        "packing (%s, max_length %d): %s", recipe.training.packing_strategy, recipe.training.max_length, packing
    )
    # a run folder belongs to one corpus and one recipe; --fresh starts it again
    values, record = resolved_values(recipe), split_record(recipe.data.corpus_dir, corpus)
    different = None if fresh else same_run_problem(output_dir, values, record)
    if different:
        raise RecipeError(f"{different}: train into a new output_dir, or pass --fresh to start this one afresh")
    checkpoint = checkpoint_to_resume(recipe, output_dir, fresh)
    clock = StepClock()
    recorder = RecordRun(output_dir, values, record, fresh)
    trainer = build_trainer(recipe, corpus, tokenizer, callbacks=[clock, LogLines(), recorder])
    record_portable_base(trainer, recipe.model)

    # 4. train, resuming where an interrupted run stopped
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    reset_peak_memory()
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError:
        raise RecipeError(out_of_memory_message(recipe)) from None

    # 5. adapter, tokenizer and the numbers
    if trainer.is_fsdp_enabled:
        # checkpoints stay sharded (fast to write, resumable); the final adapter is gathered whole so that it
        # loads on one device like any other
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    check_finite_weights(trainer)
    trainer.save_model(str(output_dir))
    if result is not None:  # None: a resumed run found nothing left to train; its files are there already
        # the files other Trainer scripts leave (train_results.json, all_results.json, trainer_state.json)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    stats = {**training_stats(recipe, trainer, clock, search, packing), "mixture": mixture}
    if state.is_main_process:
        if stats["this_segment"]["steps"] == 0 and (output_dir / "training_stats.json").exists():
            logger.info("nothing left to train: %s already holds a finished run", output_dir)
        else:
            write_atomic(output_dir / "training_stats.json", json.dumps(stats, indent=2) + "\n")
            logger.info(
                "done: %d steps, %.1f tokens/s, effective batch %d, %s",
                stats["steps"],
                stats["tokens_per_second"] or 0,
                stats["effective_batch_size"],
                peak_memory(),
            )
        write_model_card(output_dir)  # replaces the card TRL's save_model wrote, which cannot name a local base
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="climate-sft train", epilog="Any other --key value pair overrides that recipe key (see --help-keys)."
    )
    parser.add_argument("--config", help="recipe YAML or a shipped recipe's name (climate-sft ls), e.g. smollm2_cpu")
    parser.add_argument("--dry-run", action="store_true", help="check, print the recipe and token stats, stop")
    parser.add_argument("--help-keys", action="store_true", help="list every recipe key and exit")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start output_dir afresh: no resume, and the earlier run's results there are removed (without it, a "
        "folder holding a run of another corpus or model-shaping recipe is refused)",
    )
    argv = take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    if already_launched():
        die_with_parent()  # a killed `climate-sft train` takes this process with it
    with error_boundary("climate-sft train"):
        args, overrides = parser.parse_known_args(argv)
        if args.help_keys:
            print(RecipeParser().known_keys())
            return
        if not args.config:
            parser.error("--config RECIPE is required")
        run(args.config, overrides, args.dry_run, args.fresh)


if __name__ == "__main__":
    main()
