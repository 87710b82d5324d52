"""Near-duplicate grouping, measured: precision and recall of `near_duplicates.find_groups` at its defaults.

    python -m benchmarks.near_duplicate_quality [--seeds 3] [--scale 10000]

Each of the 12 bundled climate texts (`sample_corpus/source/`, ~1,100 words each, all on climate, so the
originals are each other's same-topic controls) gets five derived copies: the same text laid out differently
(lines re-wrapped at 60 characters, paragraphs run together), 1 %, 3 % and 5 % of its words replaced, and a
summary that quotes its first half and adds a paragraph of its own. A family is an original and its copies;
a pair of texts is a true near-duplicate pair when both are of one family. Precision: share of pairs put in one
group that are true pairs; recall: share of true pairs put in one group. Each seed draws other edits.
`--scale N` also times the grouping stage alone on N generated documents of 1,500 words each (words drawn at
random from the bundled texts' vocabulary, so no two are near-duplicates): seconds and the process's peak
memory (`ru_maxrss`, above what it held before). Results go to benchmarks/results/near_duplicates.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from climate_sft.corpus import SAMPLE_PDF_DIR
from climate_sft.files import write_atomic
from climate_sft.near_duplicates import BANDS, ROWS, SHINGLE_WORDS, THRESHOLD, find_groups

RESULTS = Path(__file__).parent / "results" / "near_duplicates.json"
KINDS = ("layout", "edit_1pct", "edit_3pct", "edit_5pct", "summary_half")


def edited(text: str, share: float, rng: random.Random) -> str:
    """`share` of the words replaced by other words of the same text (the edits of a second edition)."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        words[i] = rng.choice(words)
    return " ".join(words)


def copies(text: str, rng: random.Random) -> dict[str, str]:
    paragraphs = text.split("\n\n")
    half = paragraphs[: len(paragraphs) // 2]
    return {
        "layout": "\n".join(textwrap.fill(p, 60) for p in paragraphs),
        "edit_1pct": edited(text, 0.01, rng),
        "edit_3pct": edited(text, 0.03, rng),
        "edit_5pct": edited(text, 0.05, rng),
        "summary_half": "\n\n".join([*half, "In summary, the sections quoted above set out the main findings."]),
    }


def measure(seed: int) -> dict:
    rng = random.Random(seed)
    sources = sorted((SAMPLE_PDF_DIR.parent / "source").glob("*.txt"))
    texts, family, kind = [], [], []
    for f, path in enumerate(sources):
        original = path.read_text(encoding="utf-8")
        for name, text in {"original": original, **copies(original, rng)}.items():
            texts.append(text)
            family.append(f)
            kind.append(name)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        groups = find_groups(lambda: iter(texts), Path(tmp))
        seconds = time.perf_counter() - start
    grouped = {
        (i, j) for i, j in itertools.combinations(range(len(texts)), 2) if i in groups and groups.get(j) == groups[i]
    }
    true = {(i, j) for i, j in itertools.combinations(range(len(texts)), 2) if family[i] == family[j]}
    by_kind = {}
    for name in KINDS:
        pairs = {(i, j) for i, j in true if kind[i] == "original" and kind[j] == name}
        by_kind[name] = round(len(pairs & grouped) / len(pairs), 3)
    return {
        "seed": seed,
        "texts": len(texts),
        "true_pairs": len(true),
        "grouped_pairs": len(grouped),
        "precision": round(len(grouped & true) / len(grouped), 3) if grouped else None,
        "recall": round(len(grouped & true) / len(true), 3),
        "recall_original_with_copy": by_kind,
        "control_pairs_grouped": len(grouped - true),
        "seconds": round(seconds, 2),
    }


def measure_scale(documents: int, words: int = 1500) -> dict:
    sources = sorted((SAMPLE_PDF_DIR.parent / "source").glob("*.txt"))
    vocabulary = sorted({w for path in sources for w in path.read_text(encoding="utf-8").split()})

    def texts():
        rng = random.Random(0)
        for _ in range(documents):
            yield " ".join(rng.choices(vocabulary, k=words))

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        groups = find_groups(texts, Path(tmp))
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "documents": documents,
        "words_each": words,
        "groups_found": len(set(groups.values())),
        "seconds": round(seconds, 1),
        "seconds_per_10k_documents": round(seconds * 10_000 / documents, 1),
        "peak_rss_mib": round(peak / 1024),
        "peak_rss_growth_mib": round((peak - before) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=0, help="also time the stage on N generated documents")
    args = parser.parse_args()
    runs = [measure(seed) for seed in range(args.seeds)]
    scale = measure_scale(args.scale) if args.scale else None
    result = {
        "command": "python -m benchmarks.near_duplicate_quality " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "minhash": {"shingle_words": SHINGLE_WORDS, "bands": BANDS, "rows": ROWS, "jaccard_threshold": THRESHOLD},
        "runs": runs,
        **({"scale": scale} if scale else {}),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS, json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(
            f"seed {run['seed']}: precision {run['precision']}, recall {run['recall']} "
            f"({run['grouped_pairs']} grouped, {run['true_pairs']} true pairs); "
            f"by copy: {run['recall_original_with_copy']}"
        )
    if scale:
        print(f"scale: {scale}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
