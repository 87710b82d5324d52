"""Stage 2: a folder of PDFs -> a `datasets.DatasetDict` split by document, saved to a corpus folder.

Corpus folder layout (what `build_corpus` writes and `load_corpus` reads):

    CORPUS_DIR/dataset/        DatasetDict (train / validation / test), `save_to_disk` format
    CORPUS_DIR/manifest.jsonl  one line per input file: status, reason, warnings, document id
                               (a build that finds no usable document writes manifest.failed.jsonl)
    CORPUS_DIR/stats.json      documents, pages, characters and words per split
    CORPUS_DIR/cache/          extraction results keyed by file hash, so a rerun touches only new files

Every file is written to a temporary name and renamed into place, so an interrupted or failed build
leaves the previous corpus whole. pymupdf is imported only to extract: training and evaluation read the
saved corpus without it (the GPU machines do not have it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from climate_sft import UserError

SAMPLE_PDF_DIR = Path(__file__).parent / "sample_corpus" / "pdfs"
SPLITS = ("train", "validation", "test")


class CorpusError(UserError):
    """No corpus (or run folder) to work with; the message says why and where to look."""


@dataclass
class FileResult:
    """What one input file gave: a document, or the reason it gave none."""

    source: str
    sha256: str
    status: str  # "ok" | "skipped" | "duplicate"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    id: str = ""
    title: str = ""
    pages: int = 0
    characters: int = 0
    text: str = ""
    from_cache: bool = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def extract_file(path: Path, sha: str) -> FileResult:
    """Extract one PDF into a result, good or bad."""
    from climate_sft.pdf_text import PdfError, read_pdf

    try:
        doc = read_pdf(path)
    except PdfError as error:
        return FileResult(source=str(path), sha256=sha, status="skipped", reason=str(error))
    return FileResult(
        source=str(path),
        sha256=sha,
        status="ok",
        warnings=doc.warnings,
        id=sha[:16],
        title=doc.title,
        pages=doc.page_count,
        characters=len(doc.text),
        text=doc.text,
    )


def _extract_one(job: tuple[Path, str]) -> FileResult:
    return extract_file(*job)


def load_cache(path: Path) -> dict[str, dict]:
    """Results of earlier builds by file hash. A line torn by a crash is skipped: that file is a miss."""
    cache = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                cache[entry["sha256"]] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return cache


def extract_folder(pdf_dir: Path, cache_dir: Path, workers: int | None = None) -> list[FileResult]:
    """Extract every PDF under `pdf_dir` (recursively) in parallel, with a progress bar.

    Files whose bytes were extracted before (same hash, same cleaner version) come from the cache, an
    append-only JSON-lines file: one open per build rather than one file per PDF, and each result is
    written as soon as it arrives, so an interrupted build keeps what it did.
    """
    from climate_sft.pdf_text import CLEANER_VERSION

    paths = sorted(p for p in pdf_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")
    hashes = [file_sha256(p) for p in paths]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_path = cache_dir / f"extract-v{CLEANER_VERSION}.jsonl"
    cache = load_cache(cache_path)
    misses = list(dict.fromkeys((p, h) for p, h in zip(paths, hashes) if h not in cache))
    workers = min(workers or os.cpu_count() or 1, max(1, len(misses)))
    bar = dict(total=len(misses), desc="extract", unit="pdf", disable=None if misses else True)
    with (
        open(cache_path, "a", encoding="utf-8") as log,
        ProcessPoolExecutor(workers) if workers > 1 else _Serial() as pool,
    ):
        # chunksize keeps inter-process overhead small for folders of many short PDFs
        for result in tqdm(pool.map(_extract_one, misses, chunksize=4), **bar):
            cache[result.sha256] = asdict(result)
            log.write(json.dumps(cache[result.sha256]) + "\n")
    fresh = {h for _, h in misses}
    return [FileResult(**{**cache[h], "source": str(p), "from_cache": h not in fresh}) for p, h in zip(paths, hashes)]


class _Serial:
    """The executor interface, in this process: one worker needs no pool (nor its start-up cost)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, jobs, chunksize=1):
        return map(fn, jobs)


def mark_duplicates(results: list[FileResult]) -> None:
    """Keep the first of files with the same bytes or the same extracted text."""
    seen: dict[str, str] = {}
    for result in results:
        if result.status != "ok":
            continue
        for key in (result.sha256, hashlib.sha256(result.text.encode()).hexdigest()):
            if key in seen:
                result.status, result.reason = "duplicate", f"same content as {seen[key]}"
                break
        else:
            seen[result.sha256] = seen[hashlib.sha256(result.text.encode()).hexdigest()] = result.source


def split_documents(ids: list[str], ratios: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Assign whole documents to splits: deterministic for a seed and a set of ids, whatever their order.

    With three or more documents every split gets at least one.
    """
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n = len(order)
    total = sum(ratios)
    n_val = round(n * ratios[1] / total)
    n_test = round(n * ratios[2] / total)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
        n_val = min(n_val, n - n_test - 1)
    n_train = n - n_val - n_test
    return {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def corpus_stats(dataset_dict) -> dict:
    stats = {}
    for split in SPLITS:
        ds = dataset_dict[split]
        stats[split] = {
            "documents": len(ds),
            "pages": sum(ds["pages"]),
            "characters": sum(ds["characters"]),
            "words": sum(len(t.split()) for t in ds["text"]),
        }
    stats["total"] = {key: sum(stats[s][key] for s in SPLITS) for key in stats["train"]}
    return stats


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a freshly written folder into place; the old one is removed only after the swap."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def build_corpus(
    pdf_dir: str | Path = SAMPLE_PDF_DIR,
    output_dir: str | Path = "data/corpus",
    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05),
    seed: int = 42,
    workers: int | None = None,
) -> tuple[dict, list[FileResult]]:
    """Extract, deduplicate, split and save. Returns (stats, per-file results)."""
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # the extraction bar and the summary say all there is to say

    pdf_dir, output_dir = Path(pdf_dir), Path(output_dir)
    if not pdf_dir.is_dir():
        raise CorpusError(f"{pdf_dir}: no such folder; pass a folder of PDFs to `climate-sft extract`")
    output_dir.mkdir(parents=True, exist_ok=True)
    results = extract_folder(pdf_dir, output_dir / "cache", workers)
    mark_duplicates(results)
    manifest = "".join(json.dumps({k: v for k, v in asdict(r).items() if k != "text"}) + "\n" for r in results)
    documents = {r.id: r for r in results if r.status == "ok"}
    if not documents:
        # The previous corpus and its manifest stay as they were; this build's reasons go beside them.
        write_atomic(output_dir / "manifest.failed.jsonl", manifest)
        raise CorpusError(
            f"no usable document among {len(results)} PDF(s) in {pdf_dir}; "
            f"see {output_dir / 'manifest.failed.jsonl'} for each file's reason"
        )

    splits = split_documents(list(documents), ratios, seed)
    columns = ("id", "source", "title", "pages", "characters", "warnings", "text")
    dataset_dict = DatasetDict(
        {
            split: Dataset.from_list(
                [{c: getattr(documents[i], c) for c in columns} for i in sorted(ids)],
                features=document_features(),
            )
            for split, ids in splits.items()
        }
    )
    tmp = output_dir / f".dataset.tmp-{os.getpid()}"
    dataset_dict.save_to_disk(str(tmp))
    _replace_dir(tmp, output_dir / "dataset")
    write_atomic(output_dir / "manifest.jsonl", manifest)
    stats = corpus_stats(dataset_dict)
    stats["files"] = {status: sum(r.status == status for r in results) for status in ("ok", "skipped", "duplicate")}
    stats["seed"], stats["ratios"] = seed, list(ratios)
    write_atomic(output_dir / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats, results


def document_features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "source": Value("string"),
            "title": Value("string"),
            "pages": Value("int64"),
            "characters": Value("int64"),
            "warnings": Sequence(Value("string")),
            "text": Value("string"),
        }
    )


def check_corpus(corpus_dir: str | Path) -> list[str]:
    """The split names of a saved corpus, read from its index alone; CorpusError naming the folder otherwise."""
    index = Path(corpus_dir) / "dataset" / "dataset_dict.json"
    if not index.parent.is_dir():
        raise CorpusError(
            f"{corpus_dir} holds no corpus; build it with `climate-sft extract PDF_DIR --output {corpus_dir}`"
        )
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CorpusError(
            f"{index} is missing or unreadable: the corpus is damaged; rebuild it with `climate-sft extract`"
        ) from None
    return list(splits)


def load_corpus(corpus_dir: str | Path):
    """The DatasetDict that `build_corpus` saved. Raises `CorpusError` naming the folder if there is none."""
    from datasets import load_from_disk

    path = Path(corpus_dir) / "dataset"
    if not path.is_dir():
        raise CorpusError(
            f"{corpus_dir}: no corpus here; build one with `climate-sft extract PDF_DIR --output {corpus_dir}`"
        )
    return load_from_disk(str(path))


def summary(stats: dict, results: list[FileResult], output_dir: Path) -> str:
    """The report printed at the end of `climate-sft extract`."""
    lines = []
    for r in results:
        if r.status != "ok":
            lines.append(f"  {r.status:9s} {r.source}: {r.reason}")
        for warning in r.warnings:
            lines.append(f"  warning   {r.source}: {warning}")
    cached = sum(r.from_cache for r in results)
    head = (
        f"{len(results)} PDF(s): {stats['files']['ok']} documents, {stats['files']['skipped']} skipped, "
        f"{stats['files']['duplicate']} duplicate ({len(results) - cached} extracted, {cached} from cache)"
    )
    table = [f"  {'split':10s} {'docs':>5s} {'pages':>6s} {'chars':>9s} {'words':>8s}"] + [
        f"  {s:10s} {stats[s]['documents']:5d} {stats[s]['pages']:6d} {stats[s]['characters']:9d} "
        f"{stats[s]['words']:8d}"
        for s in (*SPLITS, "total")
    ]
    return "\n".join([head, *lines, *table, f"corpus written to {output_dir} (manifest.jsonl, stats.json)"])
