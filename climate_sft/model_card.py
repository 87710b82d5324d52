"""A run folder -> its README.md as a Hub model card, from the run's own files.

Written by `climate-sft train` when the adapter is saved (in place of TRL's card, which says "fine-tuned
version of [None]" for a local base) and again by `climate-sft report`, which adds the perplexity once
`climate-sft eval` has measured it. The card's front matter names the base model by its hub id, so the Hub
links the adapter to it; the same id is the adapter's `base_model_name_or_path`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from climate_sft.confidence import with_interval
from climate_sft.files import read_mapping, write_atomic

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def hub_base_model(model_args) -> str | None:
    """The base model's hub id: the recipe's `base_model_id`, or `model_name_or_path` when it is a hub id."""
    if getattr(model_args, "base_model_id", None):
        return model_args.base_model_id
    name = model_args.model_name_or_path
    if _HUB_ID.match(name) and not Path(name).exists() and not name.endswith(".gguf"):
        return name
    return None


def _load(path: Path):
    fix = f"rerun the command that writes it (train, or eval for eval_results.json) on {path.parent}"
    return read_mapping(path, fix, required=False)


def model_card(run_dir: Path) -> str:
    recipe = _load(run_dir / "recipe.yaml") or {}
    stats = _load(run_dir / "training_stats.json") or {}
    data = _load(run_dir / "data.json") or {}
    evaluation = _load(run_dir / "eval_results.json")
    adapter = _load(run_dir / "adapter_config.json") or {}
    base = adapter.get("base_model_name_or_path") or recipe.get("model_name_or_path")
    portable = bool(base and _HUB_ID.match(base) and not Path(base).exists())
    method = "qlora" if recipe.get("load_in_4bit") else "lora"
    front = {
        **({"base_model": base} if portable else {}),
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["climate-sft", "trl", "sft", method, "climate", *([f"base_model:adapter:{base}"] if portable else [])],
    }
    name = Path(recipe.get("output_dir", run_dir)).name
    base_link = f"[{base}](https://huggingface.co/{base})" if portable else f"`{base}` (a local model)"
    splits = data.get("splits", {})
    packing = stats.get("packing") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"A {'QLoRA' if method == 'qlora' else 'LoRA'} adapter for {base_link}, trained with "
        "climate-sft (TRL `SFTTrainer` + PEFT) on text extracted from climate PDFs.",
        "",
        "## Use",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        "from transformers import AutoTokenizer",
        "",
        f'model = AutoPeftModelForCausalLM.from_pretrained("{run_dir.name}")  # this folder, or its hub id',
        f'tokenizer = AutoTokenizer.from_pretrained("{run_dir.name}")',
        "```",
        "",
        f"- A standalone model: `climate-sft merge {run_dir.name} --output {run_dir.name}-merged` "
        "(add `--gguf` for llama.cpp).",
        f'- Answers of base and fine-tuned model side by side: `climate-sft generate {run_dir.name} --prompt "..."`.',
        "- The base model from elsewhere (a local copy, a mirror): `--base FOLDER` for `merge` and `generate`, or "
        "set `base_model_name_or_path` in `adapter_config.json`.",
        "",
        "## Data",
        "",
        "Documents per split (by document, none shared): "
        + (", ".join(f"{split} {len(docs)}" for split, docs in splits.items()) or "not recorded")
        + ".",
    ]
    for split, counts in packing.items():
        lines.append(f"- {split}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
    lines += ["", "## Results", ""]
    if evaluation:
        lines.append(
            f"Perplexity on {evaluation['documents']} held-out document(s) ({evaluation['tokens']} tokens, "
            f"windows of {evaluation['window']}): **{_shown(evaluation['base'])} (base) -> "
            f"{_shown(evaluation['fine_tuned'])} (fine-tuned), "
            f"{with_interval(evaluation['relative_change'], evaluation.get('relative_change_interval'), True)}**"
            + (" (95 % bootstrap intervals over documents)." if evaluation["base"].get("interval") else ".")
        )
    else:
        lines.append("Perplexity: not measured yet (`climate-sft eval` on this folder, then `climate-sft report`).")
    if stats:
        lines += [
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| steps, epochs | {stats['steps']}, {stats['epochs']} |",
            f"| effective batch | {stats['effective_batch_size']} sequences of up to {stats['max_length']} tokens |",
            f"| tokens trained on | {stats['tokens_seen']:,} |",
            f"| training time | {stats['train_seconds']:.1f} s on {stats.get('device', '?')} |",
            f"| throughput | {stats['tokens_per_second'] or 0:,.0f} tokens/s |",
            f"| final training loss | {stats['final_loss']:.4f} |" if stats.get("final_loss") is not None else "",
        ]
    lines += ["", "REPORT.md in this folder holds the full report with plots.", ""]
    lines += [
        "## Recipe",
        "",
        "The resolved recipe (`recipe.yaml`); `climate-sft train --config recipe.yaml` reruns it.",
        "",
    ]
    lines += ["```yaml", yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", ""]
    lines += [
        "To publish a run from training itself, set the recipe keys `push_to_hub: true` and `hub_model_id: "
        "USER/NAME` (`hf auth login` first); or upload this folder afterwards: `hf upload USER/NAME "
        f"{run_dir.name}`.",
        "",
        "## Library versions",
        "",
        ", ".join(f"{k} {v}" for k, v in (stats.get("versions") or {}).items()) or "not recorded",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def write_model_card(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / "README.md"
    write_atomic(path, model_card(run_dir))
    return path


def _shown(model_result: dict) -> str:
    return with_interval(model_result["perplexity"], model_result.get("interval"))
