"""Stage 6: perplexity of the base model and of base + adapter on the held-out test documents.

    climate-sft eval RUN_DIR       (writes RUN_DIR/eval_results.json)

Both numbers come from the same tokens, the same windows and the same model loading as training (a QLoRA
run is scored on its 4-bit base, with and without the adapter), through the project's `evaluate` metric
(`climate_sft/metrics/perplexity`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch
from peft import PeftModel

from climate_sft.config import load_recipe
from climate_sft.corpus import CorpusError, held_out_documents, write_atomic
from climate_sft.modeling import load_model, load_tokenizer

logger = logging.getLogger(__name__)
METRIC_PATH = Path(__file__).parent / "metrics" / "perplexity"


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


def evaluate_run(run_dir: str | Path, batch_size: int | None = None, stride: int | None = None) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        raise CorpusError(
            f"{run_dir}: no finished training run here (adapter_config.json and recipe.yaml); train first"
        )
    if not (run_dir / "data.json").is_file():
        raise CorpusError(f"{run_dir}: no data.json (the documents the run held out); retrain with this version")
    recipe = load_recipe(run_dir / "recipe.yaml")
    split = recipe.data.test_split
    documents, note = held_out_documents(json.loads((run_dir / "data.json").read_text()), split)
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
    base = score(metric, model, tokenizer, texts, max_length, stride, batch_size, precision)
    tuned_model = PeftModel.from_pretrained(model, str(run_dir))
    tuned = score(metric, tuned_model, tokenizer, texts, max_length, stride, batch_size, precision)

    results = {
        "split": split,
        "documents": base["documents"],
        "tokens": base["tokens"],
        "window": max_length,
        "stride": stride,
        "precision": precision,
        "base": {"perplexity": base["perplexity"], "mean_nll": base["mean_nll"]},
        "fine_tuned": {"perplexity": tuned["perplexity"], "mean_nll": tuned["mean_nll"]},
        "relative_change": (tuned["perplexity"] - base["perplexity"]) / base["perplexity"],
        "per_document": [
            {
                "id": d["id"],
                "title": d["title"],
                "tokens": b["tokens"],
                "base": b["perplexity"],
                "fine_tuned": t["perplexity"],
            }
            for d, b, t in zip(documents, base["per_document"], tuned["per_document"])
        ],
    }
    write_atomic(run_dir / "eval_results.json", json.dumps(results, indent=2) + "\n")
    return results


def summary_line(results: dict, run_dir: str | Path) -> str:
    """What `climate-sft eval` prints."""
    return (
        f"{results['split']} split, {results['documents']} documents, {results['tokens']} tokens scored: "
        f"perplexity {results['base']['perplexity']:.3f} (base) -> {results['fine_tuned']['perplexity']:.3f} "
        f"(fine-tuned), {results['relative_change']:+.1%}; written to {Path(run_dir) / 'eval_results.json'}"
    )
