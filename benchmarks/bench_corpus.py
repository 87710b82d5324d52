"""A corpus big enough to time GPU training: the bundled climate prose, reshuffled into many documents.

    python -m benchmarks.bench_corpus data/bench_corpus --documents 2000

Document lengths are log-uniform between 300 and 12,000 words-ish (paragraphs drawn at random from the 12
bundled sources), so packed rows hold several short documents or a slice of a long one, as real report
collections do. Deterministic for a seed. Written in the corpus format `climate-sft train` reads
(`climate_sft.corpus.write_corpus`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from climate_sft.corpus import SAMPLE_PDF_DIR, corpus_lock, write_corpus


def synthetic_documents(n: int, seed: int = 0, min_chars: int = 1_500, max_chars: int = 60_000) -> list[dict]:
    sources = sorted((SAMPLE_PDF_DIR.parent / "source").glob("*.txt"))
    paragraphs = [p.removeprefix("## ") for s in sources for p in s.read_text().split("\n\n")[1:] if p.strip()]
    rng = random.Random(seed)
    documents = []
    for i in range(n):
        target = math.exp(rng.uniform(math.log(min_chars), math.log(max_chars)))
        body: list[str] = []
        while sum(map(len, body)) < target:
            body.append(rng.choice(paragraphs))
        text = "\n\n".join(body)
        documents.append(
            {
                "id": f"bench{i:05d}",
                "source": "synthetic",
                "title": f"Benchmark document {i}",
                "pages": 1,
                "characters": len(text),
                "warnings": [],
                "text": text,
            }
        )
    return documents


def write_synthetic_corpus(output: Path, documents: list[dict], held_out: int = 10) -> Path:
    """The documents as a corpus folder: the last `held_out` for test, the `held_out` before them for validation."""
    splits = {
        "train": documents[: -2 * held_out],
        "validation": documents[-2 * held_out : -held_out],
        "test": documents[-held_out:],
    }
    output.mkdir(parents=True, exist_ok=True)
    with corpus_lock(output):
        return write_corpus(output, splits, manifest="", stats={"synthetic": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = write_synthetic_corpus(args.output, synthetic_documents(args.documents, args.seed))
    print(args.output, json.loads((build / "stats.json").read_text())["total"])


if __name__ == "__main__":
    main()
