"""Stage 2b: corpora -> the training mixture (recipe key `mix`), recorded in `training_stats.json`.

    corpus_dir: data/corpus     # the run's corpus: trained on, and its validation and test splits
    mix:                        # other corpora's training documents, each as a share of the training tokens
      data/general: 0.2

Shares count tokens, not documents: a report is a hundred times a web page. As TRL's dataset mixtures do with
`fraction`, no document is repeated: the mixture is the largest in which every corpus gives its share from the
documents it has, drawn in a seeded random order (whole documents, so a share is met to within one). A text
of the run's own validation or test split is never drawn from another corpus.
"""

from __future__ import annotations

import random
from pathlib import Path

from climate_sft.corpus import CorpusError, load_corpus, text_sha256
from climate_sft.packing import encode_documents

BATCH = 256  # documents tokenized at a time while drawing: a large corpus is tokenized only as far as needed


def _draw(dataset, seed: int, limit: float, excluded: set[str], tokenizer) -> tuple[list[int], list[int], int]:
    """Document indices in a seeded random order and their tokens, until the tokens reach `limit` (all the
    documents when they never do), skipping texts in `excluded`. Returns (indices, tokens, skipped)."""
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    indices, tokens, skipped, total = [], [], 0, 0
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        texts = dataset.select(chunk)["text"]
        for i, text, ids in zip(chunk, texts, encode_documents(texts, tokenizer)):
            if total >= limit:
                return indices, tokens, skipped
            if text_sha256(text) in excluded:
                skipped += 1
                continue
            indices.append(i)
            tokens.append(len(ids))
            total += len(ids)
    return indices, tokens, skipped


def _prefix(tokens: list[int], target: float) -> int:
    """How many drawn documents it takes for their tokens to reach `target`."""
    total = 0
    for n, count in enumerate(tokens):
        if total >= target:
            return n
        total += count
    return len(tokens)


def mix_corpora(corpus_dir: str, corpus, mix: dict[str, float], tokenizer, seed: int):
    """The run's corpus with its train split replaced by the mixture, and the record of what was taken."""
    from datasets import DatasetDict, concatenate_datasets

    held_out = {text_sha256(t) for split, ds in corpus.items() if split != "train" for t in ds["text"]}
    trains = {corpus_dir: corpus["train"], **{path: load_corpus(path)["train"] for path in mix}}
    shares = {corpus_dir: 1 - sum(mix.values()), **mix}
    drawn, total = {}, float("inf")  # total: the mixture's tokens, shrunk by any corpus too small for its share
    for n, (path, dataset) in enumerate(trains.items()):
        excluded = set() if path == corpus_dir else held_out
        drawn[path] = _draw(dataset, seed + n, shares[path] * total, excluded, tokenizer)
        available = sum(drawn[path][1])
        if available < shares[path] * total:
            total = available / shares[path]
    if not total:
        empty = next(path for path, (indices, _, _) in drawn.items() if not indices)
        raise CorpusError(f"mix: {empty} has no training document outside the run's validation and test texts")
    taken = {path: _prefix(tokens, shares[path] * total) for path, (_, tokens, _) in drawn.items()}
    train = concatenate_datasets([trains[path].select(drawn[path][0][: taken[path]]) for path in trains])
    tokens = {path: sum(drawn[path][1][: taken[path]]) for path in trains}
    record = {
        "seed": seed,
        "tokens": sum(tokens.values()),
        "sources": [
            {
                "corpus_dir": str(Path(path).resolve()),
                "weight": round(shares[path], 6),
                "documents": taken[path],
                "documents_available": len(trains[path]),
                "held_out_texts_skipped": drawn[path][2],
                "tokens": tokens[path],
                "share": round(tokens[path] / sum(tokens.values()), 4),
            }
            for path in trains
        ],
    }
    return DatasetDict({**corpus, "train": train}), record
