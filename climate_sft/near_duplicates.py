"""Stage 2a: near-duplicate documents (a second edition, a summary quoting a report, a truncated copy) found by
MinHash over word shingles, through datatrove's stages: signatures, buckets, clusters.

A pair is found with high probability when the Jaccard similarity of their sets of `SHINGLE_WORDS`-word shingles
(lower-cased, punctuation removed: datatrove's `simplify_text`) is above about `THRESHOLD`, and rarely below it:
`BANDS` buckets of `ROWS` hashes each. The banding is lower than datatrove's web default (14 x 8, about 0.72):
a summary quoting half of a report has a Jaccard similarity near 0.5 and must be found (32 x 3 finds such a pair
with probability 0.99, one at 0.75 always), while two different reports on one topic share under 1 % of shingles.

The corpus builder keeps one document of each group and puts a group in one split (`corpus.py`); `eval` uses
`cross_split_pairs` to name test documents that have a near-duplicate among the run's training documents, with
the same parameters.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupSignature,
)
from datatrove.utils.word_tokenizers import WordTokenizer

SHINGLE_WORDS = 5
BANDS, ROWS = 32, 3
THRESHOLD = round((1 / BANDS) ** (1 / ROWS), 2)  # the Jaccard similarity where LSH's S-curve is steepest: 0.31
CONFIG = MinhashConfig(n_grams=SHINGLE_WORDS, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=1)


class Words(WordTokenizer):
    """Words split at whitespace (after datatrove's normalisation): datatrove's own tokenizers need spaCy or NLTK,
    and shingles of any language's words need nothing more. MinHash reads words only."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        raise NotImplementedError("MinHash reads words only")

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError("MinHash reads words only")


def _signer(folder: Path) -> MinhashDedupSignature:
    return MinhashDedupSignature(str(folder / "signatures"), config=CONFIG, language=Words())


def find_groups(texts: Callable[[], Iterator[str]], work_dir: Path) -> dict[int, int]:
    """Near-duplicate groups among the texts `texts()` yields: {index: group} for every text in a group of two or
    more, a group named by its first member's index. Datatrove's stages run in `work_dir` (local executor, one
    task for signatures and clusters, one per bucket), their logs going to work_dir/logs rather than the console."""

    def documents(data, rank: int = 0, world_size: int = 1):
        for index, text in enumerate(texts()):
            yield Document(text=text, id=str(index))

    def run(pipeline, name: str, tasks: int = 1) -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # datatrove logs each task at INFO on the console
            LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(work_dir / "logs" / name)).run()

    run([documents, _signer(work_dir)], "signatures")
    buckets = MinhashDedupBuckets(str(work_dir / "signatures"), str(work_dir / "buckets"), config=CONFIG)
    run([buckets], "buckets", tasks=BANDS)
    clusters = MinhashDedupCluster(
        str(work_dir / "buckets"), str(work_dir / "clusters"), config=CONFIG, save_cluster_id=True
    )
    run([clusters], "clusters")
    members: dict[int, list[int]] = {}
    path = work_dir / "clusters" / "000000.clusters"
    if path.exists():
        data = path.read_bytes()
        for index, cluster in struct.iter_unpack("<2I", data):
            members.setdefault(cluster, []).append(index)
    return {index: min(group) for group in members.values() for index in group}


def cross_split_pairs(test: list[str], train: list[str]) -> list[tuple[int, int]]:
    """(test index, train index) of each test text that shares a MinHash bucket with a training text: the same
    signature and banding as `find_groups`, in memory (a run's splits, not a whole archive)."""
    signer = _signer(Path("unused"))  # the folder is only written by the pipeline step's run()

    def bands(text: str) -> list[tuple[int, tuple[int, ...]]]:
        shingles = signer.get_shingles(text)
        return [(b, tuple(band)) for b, band in enumerate(signer.get_signature(shingles))] if shingles.size else []

    index: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for j, text in enumerate(train):
        for key in bands(text):
            index.setdefault(key, []).append(j)
    pairs = set()
    for i, text in enumerate(test):
        for key in bands(text):
            pairs.update((i, j) for j in index.get(key, ()))
    return sorted(pairs)


def leaks_into_training(test: list[dict], train: list[dict]) -> list[dict]:
    """Each test document (a corpus row: id, title, text) with a near-duplicate among the training documents."""
    pairs = cross_split_pairs([d["text"] for d in test], [d["text"] for d in train])
    return [{"test_id": test[i]["id"], "test_title": test[i]["title"], "train_id": train[j]["id"]} for i, j in pairs]
