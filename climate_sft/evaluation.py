"""Stage 6: perplexity of the base model and of base + adapter on the held-out test documents.

    climate-sft eval RUN_DIR [--general-text DIR] [--forgetting-threshold 0.05]   (writes RUN_DIR/eval_results.json)

Each is given with a 95 % bootstrap interval over the test documents (`confidence.py`), and the same two models
are also scored on general, non-climate English (the bundled `sample_corpus/general/`, or a folder the user
names) to measure forgetting. Both numbers come from the same tokens, the same windows and the same model
loading as training (a QLoRA run is scored on its 4-bit base, with and without the adapter), through the
project's `evaluate` metric (`climate_sft/metrics/perplexity`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch
from peft import PeftModel

from climate_sft.confidence import perplexity_intervals, with_interval
from climate_sft.config import load_recipe
from climate_sft.corpus import CorpusError, held_out_documents, read_run_record
from climate_sft.files import check_adapter, file_sha256, write_atomic
from climate_sft.modeling import load_model, load_tokenizer
from climate_sft.sources import Text, read_text_file, text_files

logger = logging.getLogger(__name__)
METRIC_PATH = Path(__file__).parent / "metrics" / "perplexity"
# Ordinary English written for the project (not climate): what fine-tuning may have cost elsewhere.
GENERAL_TEXT_DIR = Path(__file__).parent / "sample_corpus" / "general"
# A rise in general-text perplexity beyond this share is flagged in the report as forgetting.
FORGETTING_THRESHOLD = 0.05


def load_metric():
    import evaluate

    return evaluate.load(str(METRIC_PATH))


def score(metric, model, tokenizer, texts, max_length, stride, batch_size, precision) -> dict:
    """One metric pass, under the recipe's mixed precision on GPU."""
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision in ("bf16", "fp16") and torch.cuda.is_available()
        else contextlib.nullcontext()
    )
    with autocast:
        return metric.compute(
            predictions=texts,
            model=model,
            tokenizer=tokenizer,
            max_length=max_length,
            stride=stride,
            batch_size=batch_size,
        )


def general_texts(folder: str | Path) -> list[Text]:
    """The `.txt` / `.md` files of a folder, as documents to measure forgetting on; CorpusError when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"--general-text {folder}: no such folder; give a folder of .txt or .md files")
    texts = [t for t in map(read_text_file, text_files(folder)) if t.text]
    if not texts:
        raise CorpusError(f"--general-text {folder}: no .txt or .md file with text in it")
    return texts


def compare(base: dict, tuned: dict) -> dict:
    """Base and fine-tuned scores of the same documents, with bootstrap intervals over those documents."""
    return perplexity_intervals(
        [d["tokens"] for d in base["per_document"]],
        [d["nll"] for d in base["per_document"]],
        [d["nll"] for d in tuned["per_document"]],
    ) | {"tokens": base["tokens"]}


def evaluate_run(
    run_dir: str | Path,
    batch_size: int | None = None,
    stride: int | None = None,
    general_text: str | Path = GENERAL_TEXT_DIR,
    forgetting_threshold: float = FORGETTING_THRESHOLD,
) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        raise CorpusError(
            f"{run_dir}: no finished training run here (adapter_config.json and recipe.yaml); train first"
        )
    check_adapter(run_dir)
    adapter_sha256 = file_sha256(run_dir / "adapter_model.safetensors")  # report refuses results of another adapter
    if not forgetting_threshold > 0:
        raise CorpusError(f"--forgetting-threshold {forgetting_threshold}: give a fraction above 0, e.g. 0.05")
    general = general_texts(general_text)
    recipe = load_recipe(run_dir / "recipe.yaml")
    split = recipe.data.test_split
    documents, note = held_out_documents(read_run_record(run_dir), split)
    if not documents:
        raise CorpusError(f"{run_dir}: the run's {split} split holds no document; rebuild the corpus with more PDFs")
    if note:
        logger.warning("%s", note)
    texts = [d["text"] for d in documents]
    max_length = recipe.training.max_length
    stride = stride or max_length // 2
    batch_size = batch_size or (8 if torch.cuda.is_available() else 2)
    precision = recipe.training.precision

    tokenizer = load_tokenizer(recipe.model)
    if recipe.model.attn_implementation == "varlen":
        recipe.model.attn_implementation = "sdpa"  # padded windows, not packed rows: plain sdpa is the kernel
    model = load_model(recipe.model)
    if model.device.type == "cpu" and torch.cuda.is_available():
        model.to("cuda")  # unquantized models load on the CPU; quantized ones are placed at load time
    metric = load_metric()
    general_docs = [t.text for t in general]
    base = score(metric, model, tokenizer, texts, max_length, stride, batch_size, precision)
    base_general = score(metric, model, tokenizer, general_docs, max_length, stride, batch_size, precision)
    tuned_model = PeftModel.from_pretrained(model, str(run_dir))
    tuned = score(metric, tuned_model, tokenizer, texts, max_length, stride, batch_size, precision)
    tuned_general = score(metric, tuned_model, tokenizer, general_docs, max_length, stride, batch_size, precision)
    test = compare(base, tuned)
    forgetting = compare(base_general, tuned_general)

    results = {
        "adapter_sha256": adapter_sha256,
        "split": split,
        "documents": base["documents"],
        "tokens": base["tokens"],
        "window": max_length,
        "stride": stride,
        "precision": precision,
        "model": recipe.model.model_name_or_path,
        "tokenizer": {"class": type(tokenizer).__name__, "vocabulary": len(tokenizer)},
        "base": {"perplexity": base["perplexity"], "mean_nll": base["mean_nll"], "interval": test["base"]["interval"]},
        "fine_tuned": {
            "perplexity": tuned["perplexity"],
            "mean_nll": tuned["mean_nll"],
            "interval": test["fine_tuned"]["interval"],
        },
        "relative_change": (tuned["perplexity"] - base["perplexity"]) / base["perplexity"],
        "relative_change_interval": test["relative_change"]["interval"],
        "bootstrap": {k: test[k] for k in ("resamples", "seed", "level")} | {"over": "documents, paired"},
        "per_document": [
            {
                "id": d["id"],
                "title": d["title"],
                "tokens": b["tokens"],
                "base": b["perplexity"],
                "fine_tuned": t["perplexity"],
                "base_nll": b["nll"],
                "fine_tuned_nll": t["nll"],
            }
            for d, b, t in zip(documents, base["per_document"], tuned["per_document"])
        ],
        "general_text": {
            "folder": str(Path(general_text).resolve()),
            "bundled": Path(general_text).resolve() == GENERAL_TEXT_DIR.resolve(),
            "documents": forgetting["documents"],
            "tokens": forgetting["tokens"],
            "base": forgetting["base"],
            "fine_tuned": forgetting["fine_tuned"],
            "relative_change": forgetting["relative_change"]["value"],
            "relative_change_interval": forgetting["relative_change"]["interval"],
            "threshold": forgetting_threshold,
            "per_document": [
                {"title": g.title, "tokens": b["tokens"], "base": b["perplexity"], "fine_tuned": t["perplexity"]}
                for g, b, t in zip(general, base_general["per_document"], tuned_general["per_document"])
            ],
        },
    }
    write_atomic(run_dir / "eval_results.json", json.dumps(results, indent=2) + "\n")
    return results


def summary_line(results: dict, run_dir: str | Path) -> str:
    """What `climate-sft eval` prints."""
    general = results["general_text"]
    return (
        f"{results['split']} split, {results['documents']} documents, {results['tokens']} tokens scored: "
        f"perplexity {with_interval(results['base']['perplexity'], results['base']['interval'])} (base) -> "
        f"{with_interval(results['fine_tuned']['perplexity'], results['fine_tuned']['interval'])} (fine-tuned), "
        f"{with_interval(results['relative_change'], results['relative_change_interval'], percent=True)} "
        f"(95% bootstrap intervals over documents); general text ({general['documents']} documents): "
        f"{general['base']['perplexity']:.2f} -> {general['fine_tuned']['perplexity']:.2f}, "
        f"{general['relative_change']:+.1%}; written to {Path(run_dir) / 'eval_results.json'}"
    )
