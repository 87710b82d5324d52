"""Stage 8: a run's adapter merged into its base -> a standalone model folder, optionally a GGUF file.

    climate-sft merge RUN_DIR --output DIR [--dtype bfloat16|float16|float32] [--base FOLDER] [--gguf]

The base loads exactly as in training (a QLoRA run's 4-bit base included), is dequantized, takes the adapter
and is saved in safetensors with the tokenizer and generation config: `AutoModelForCausalLM.from_pretrained(DIR)`
alone loads it. The merge happens in float32 and only the result is cast, so the LoRA update is not rounded
before it is added. GGUF export runs llama.cpp's `convert_hf_to_gguf.py` on the merged folder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from climate_sft import UserError
from climate_sft.config import load_recipe
from climate_sft.files import atomic_folder, check_adapter

logger = logging.getLogger(__name__)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
GGUF_TYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
CONVERTER = "convert_hf_to_gguf.py"
CONVERTER_HELP = (
    f"GGUF export needs llama.cpp's {CONVERTER}: `git clone https://github.com/ggml-org/llama.cpp`, "
    "`pip install -r llama.cpp/requirements/requirements-convert_hf_to_gguf.txt`, then set LLAMA_CPP_DIR to that "
    "folder or pass --converter PATH"
)


def find_converter(path: str | None = None) -> Path:
    """llama.cpp's converter from --converter, or $LLAMA_CPP_DIR; a UserError saying what to install."""
    candidates = [Path(path)] if path else []
    if os.environ.get("LLAMA_CPP_DIR"):
        candidates.append(Path(os.environ["LLAMA_CPP_DIR"]) / CONVERTER)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = f" (not found: {', '.join(map(str, candidates))})" if candidates else ""
    raise UserError(CONVERTER_HELP + tried)


def load_run(run_dir: str | Path, base: str | None = None):
    """The run's recipe and its base model and tokenizer, loaded as in training; `base` replaces the recipe's
    model_name_or_path (a local copy of the base model)."""
    from climate_sft.modeling import ModelNotFound, check_model_source, load_model, load_tokenizer

    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: no finished training run here (adapter_config.json, recipe.yaml); train first")
    check_adapter(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml")
    if base:
        recipe.model.model_name_or_path = base
    try:
        check_model_source(recipe.model.model_name_or_path)
    except ModelNotFound as error:
        raise UserError(f"base model: {error}; --base FOLDER points at a local copy") from None
    if recipe.model.attn_implementation == "varlen":
        recipe.model.attn_implementation = "sdpa"  # one sequence at a time: no packed rows to keep apart
    return recipe, load_model(recipe.model), load_tokenizer(recipe.model)


def merged_model(run_dir: str | Path, base: str | None = None, dtype: str = "bfloat16"):
    """(merged model in `dtype`, tokenizer): base dequantized if it was quantized, adapter added in float32."""
    from peft import PeftModel

    _, model, tokenizer = load_run(run_dir, base)
    if getattr(model, "hf_quantizer", None) is not None:
        # straight after loading: bitsandbytes 0.50 repacks 4-bit weights for its CPU kernel at the first forward,
        # after which dequantize_4bit returns wrong values
        model = model.dequantize()
    model = model.to(torch.float32)
    merged = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
    merged = merged.to(DTYPES[dtype])
    merged.config.dtype = DTYPES[dtype]
    return merged, tokenizer


def merge(
    run_dir: str | Path,
    output: str | Path,
    dtype: str = "bfloat16",
    base: str | None = None,
    gguf: bool = False,
    converter: str | None = None,
) -> dict[str, Path]:
    """Write the merged model folder (and its GGUF file); returns what was written."""
    output = Path(output)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: give one of {', '.join(DTYPES)}")
    script = find_converter(converter) if gguf else None  # before minutes of work, not after
    with atomic_folder(output) as tmp:  # refuses a file or a non-empty folder before any work
        model, tokenizer = merged_model(run_dir, base, dtype)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if script:  # inside the folder before it appears: the model and its GGUF arrive together
            to_gguf(tmp, script, dtype, output.name)
    written = {"model": output}
    if script:
        written["gguf"] = output / f"{output.name}-{GGUF_TYPES[dtype]}.gguf"
    return written


def to_gguf(folder: Path, script: Path, dtype: str, name: str) -> Path:
    out = folder / f"{name}-{GGUF_TYPES[dtype]}.gguf"
    command = [sys.executable, str(script), str(folder), "--outfile", str(out), "--outtype", GGUF_TYPES[dtype]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{script} failed on the merged model ({last}); nothing was written")
    return out
