"""The `find-batch-size` entry point: the largest per-device batch that fits, with the effective batch kept.

    climate-sft find-batch-size --config RECIPE     (prints it and writes OUTPUT_DIR/batch_size.json)
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml -m climate_sft.batch_size --config RECIPE

Each candidate batch is tried with two real optimizer steps of the run's own trainer
(`climate_sft.trainer.find_batch_size`); under accelerate the search counts the processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accelerate import PartialState

from climate_sft import error_boundary, take_debug_flag
from climate_sft.config import load_recipe, preflight
from climate_sft.corpus import load_corpus
from climate_sft.files import write_atomic
from climate_sft.launch import already_launched, die_with_parent
from climate_sft.modeling import load_tokenizer
from climate_sft.trainer import find_batch_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="climate-sft find-batch-size", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe YAML or shipped name; needs effective_batch_size")
    argv = take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    if already_launched():
        die_with_parent()  # a killed `climate-sft find-batch-size` takes this process with it
    args, overrides = parser.parse_known_args(argv)
    state = PartialState()
    with error_boundary("climate-sft find-batch-size"):
        recipe = load_recipe(args.config, overrides)
        preflight(recipe)
        corpus = load_corpus(recipe.data.corpus_dir)
        result = find_batch_size(recipe, corpus, load_tokenizer(recipe.model), state.num_processes)
    if not state.is_main_process:
        return
    for size, outcome in result["tried"].items():
        print(f"per_device_train_batch_size {size:>4s}: {outcome}")
    print(
        f"use per_device_train_batch_size: {result['per_device_train_batch_size']} with gradient_accumulation_steps: "
        f"{result['gradient_accumulation_steps']} (effective batch {result['effective_batch_size']} over "
        f"{result['world_size']} process(es))"
    )
    out = Path(recipe.training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "batch_size.json", json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
