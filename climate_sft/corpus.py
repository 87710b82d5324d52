"""Stage 2: PDFs and other texts -> a `datasets.DatasetDict` split by document, saved to a corpus folder.

A source is a folder (PDFs, and `.txt` / `.md` files read by `sources.py`), a `.jsonl` file or a `datasets`
dataset (`sources.HubDataset`); every input becomes a manifest line with its kind, every usable one a document.

Corpus folder layout (what `build_corpus` writes and `load_corpus` reads):

    CORPUS_DIR/CURRENT                     the build in use: the name of its folder under builds/
    CORPUS_DIR/builds/NAME/dataset/        DatasetDict (train / validation / test), `save_to_disk` format
    CORPUS_DIR/builds/NAME/manifest.jsonl  one line per input file: status, reason, warnings, document id,
                                           language, quality shares, cleaning rules fired, OCRed pages,
                                           back-matter characters dropped
    CORPUS_DIR/builds/NAME/stats.json      documents, pages, characters and words per split; back matter dropped
    CORPUS_DIR/cache/                      extraction results by file hash (JSON lines; one file per shard)
    CORPUS_DIR/manifest.failed.jsonl       each file's reason, when a build found no usable document

A build is written whole into a new folder under builds/ and becomes the corpus when CURRENT is rewritten (one
atomic rename), under a lock that a second writer meets with a one-line error: a reader sees the old corpus or
the new one, never a mix, and an interrupted or failed build leaves the previous corpus as it was. Extracted
text goes to the cache as each file is done and is read back from there, a file at a time, when the Arrow
dataset is written, so memory stays flat however many PDFs there are. `--shard I/N` extracts one share of the
files into the cache (one machine of a SLURM array each); a plain build afterwards finds them all there.
pymupdf is imported only to extract: training and evaluation read the saved corpus without it (the GPU
machines do not have it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from climate_sft import UserError, sources
from climate_sft.files import DamagedFile, file_sha256, read_mapping, write_atomic
from climate_sft.sources import HubDataset

SAMPLE_PDF_DIR = Path(__file__).parent / "sample_corpus" / "pdfs"
SPLITS = ("train", "validation", "test")
COLUMNS = ("id", "source", "title", "pages", "characters", "warnings", "text")


class CorpusError(UserError):
    """No corpus (or run folder) to work with; the message says why and where to look."""


@dataclass
class FileResult:
    """What one input file gave: a document, or the reason it gave none. The text itself stays in the cache."""

    source: str
    sha256: str
    status: str  # "ok" | "skipped" | "duplicate"
    kind: str = "pdf"  # "pdf" | "text" | "jsonl" | "dataset" (sources.py)
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    id: str = ""
    title: str = ""
    pages: int = 0
    characters: int = 0
    text_sha256: str = ""
    from_cache: bool = False
    language: str = ""
    alphabetic_words: float = 0.0
    non_prose_lines: float = 0.0
    rules: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)
    back_matter_chars: int = 0


@dataclass
class CachedText:
    """Where a result's line sits in a cache file, to read its text back when the dataset is written."""

    path: Path
    offset: int

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return json.loads(f.readline())["text"]


def extract_file(path: Path, sha: str, ocr: bool = False, keep_back_matter: bool = False) -> dict:
    """Extract one PDF into a cache entry (a FileResult's fields and the text), good or bad."""
    from climate_sft.pdf_text import PdfError, read_pdf  # pymupdf: only where PDFs are read

    try:
        doc = read_pdf(path, ocr=ocr, keep_back_matter=keep_back_matter)
    except PdfError as error:
        return asdict(FileResult(source=str(path), sha256=sha, status="skipped", reason=str(error))) | {"text": ""}
    result = FileResult(
        source=str(path),
        sha256=sha,
        status="ok",
        warnings=doc.warnings,
        id=sha[:16],
        title=doc.title,
        pages=doc.page_count,
        characters=len(doc.text),
        text_sha256=text_sha256(doc.text),
        language=doc.language,
        alphabetic_words=doc.alphabetic_words,
        non_prose_lines=doc.non_prose_lines,
        rules=doc.rules,
        ocr_pages=doc.ocr_pages,
        back_matter_chars=doc.back_matter_chars,
    )
    return asdict(result) | {"text": doc.text}


def _extract_one(job: tuple[Path, str, bool, bool]) -> dict:
    return extract_file(*job)


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle (one line, pool cancelled); workers would each print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def load_cache(cache_dir: Path, stem: str) -> dict[str, tuple[dict, CachedText]]:
    """Results of earlier builds and shards by file hash, without their texts. A line torn by a crash is
    skipped: that file is a miss."""
    cache = {}
    for path in sorted([*cache_dir.glob(f"{stem}.jsonl"), *cache_dir.glob(f"{stem}.shard-*.jsonl")]):
        with open(path, "rb") as f:
            offset = 0
            for line in f:
                try:
                    entry = json.loads(line)
                    entry.pop("text")
                    cache[entry["sha256"]] = (entry, CachedText(path, offset))
                except (ValueError, KeyError, TypeError):
                    pass
                offset += len(line)
    return cache


def shard_of(sha: str, shards: int) -> int:
    """Which of `shards` shares a file belongs to: by content hash, so every machine agrees without talking."""
    return int(sha[:8], 16) % shards


def extract_folder(
    pdf_dir: Path,
    cache_dir: Path,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    ocr: bool = False,
    keep_back_matter: bool = False,
) -> list[tuple[FileResult, CachedText]]:
    """Extract every PDF under `pdf_dir` (recursively) in parallel, with a progress bar.

    Files whose bytes were extracted before (same hash, same cleaner version) come from the cache, append-only
    JSON lines written as each result arrives, so an interrupted build keeps what it did. With `shard=(i, n)`
    only the i-th of n shares is extracted, into a cache file of its own, and only its files are returned. `ocr` and
    `keep_back_matter` change the text, so each combination has cache files of its own.
    """
    from climate_sft.pdf_text import CLEANER_VERSION  # pymupdf: only where PDFs are read

    paths = sorted(p for p in pdf_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")
    hashes = [file_sha256(p) for p in paths]
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"extract-v{CLEANER_VERSION}" + ("-ocr" if ocr else "") + ("-keep-back-matter" if keep_back_matter else "")
    cache = load_cache(cache_dir, stem)
    jobs = {h: p for p, h in zip(paths, hashes) if h not in cache and (not shard or shard_of(h, shard[1]) == shard[0])}
    name = stem + (f".shard-{shard[0]}-of-{shard[1]}" if shard else "") + ".jsonl"
    log_path = cache_dir / name
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    bar = tqdm(total=len(jobs), desc="extract", unit="pdf", disable=None if jobs else True)
    pages, start, done = 0, time.perf_counter(), 0
    pool = ProcessPoolExecutor(workers, initializer=_ignore_sigint) if workers > 1 else None
    try:
        with open(log_path, "ab") as log:
            todo = [(path, sha, ocr, keep_back_matter) for sha, path in jobs.items()]
            # chunksize keeps inter-process overhead small for folders of many short PDFs
            results = pool.map(_extract_one, todo, chunksize=4) if pool else map(_extract_one, todo)
            for entry in results:
                offset = log.tell()
                log.write(json.dumps(entry).encode() + b"\n")
                log.flush()
                entry.pop("text")
                cache[entry["sha256"]] = (entry, CachedText(log_path, offset))
                done += 1
                pages += entry["pages"]
                bar.update()
                bar.set_postfix_str(f"{pages / (time.perf_counter() - start):.0f} pages/s", refresh=False)
    except KeyboardInterrupt:
        raise CorpusError(
            f"interrupted after extracting {done} of {len(jobs)} new PDF(s) (kept in {cache_dir}: a rerun goes "
            "on from there); the corpus was not changed"
        ) from None
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    fresh = set(jobs)
    return [
        (FileResult(**{**cache[h][0], "source": str(p), "from_cache": h not in fresh}), cache[h][1])
        for p, h in zip(paths, hashes)
        if not shard or shard_of(h, shard[1]) == shard[0]
    ]


def keep_languages(results: list[FileResult], languages: list[str]) -> None:
    """Skip documents in other languages (or whose language could not be told), saying which."""
    for result in results:
        if result.status == "ok" and result.language not in languages:
            result.status = "skipped"
            result.reason = f"language {result.language or 'unknown'}, not in --languages {','.join(languages)}"


def read_inputs(
    source: Path | HubDataset,
    cache_dir: Path,
    spool: Path,
    workers: int | None = None,
    text_field: str = "text",
    **pdf_options,
) -> list[tuple[FileResult, CachedText]]:
    """Every input of `source` and where its text is: PDFs through extraction and its cache; other texts are
    written to `spool`, a scratch JSON-lines file, and read back from there when the dataset is written."""
    if isinstance(source, HubDataset):
        texts, found = sources.read_dataset(source, text_field), []
    elif source.is_file():
        texts, found = sources.read_jsonl(source, text_field), []
    else:
        has_pdfs = any(p.is_file() and p.suffix.lower() == ".pdf" for p in source.rglob("*"))
        # pymupdf only where there are PDFs
        found = extract_folder(source, cache_dir, workers, None, **pdf_options) if has_pdfs else []
        texts = map(sources.read_text_file, sources.text_files(source))
    with open(spool, "wb") as f:
        for t in tqdm(texts, desc="read", unit="doc", disable=None):
            result = FileResult(source=t.source, sha256=t.sha256, status="ok", kind=t.kind, reason=t.reason)
            if t.text:
                result.id, result.title, result.characters = t.sha256[:16], t.title, len(t.text)
                result.text_sha256 = text_sha256(t.text)
            else:
                result.status = "skipped"
            found.append((result, CachedText(spool, f.tell())))
            f.write(json.dumps({"text": t.text}).encode() + b"\n")
    return found


def mark_duplicates(results: list[FileResult]) -> None:
    """Keep the first of files with the same bytes or the same extracted text."""
    seen: dict[str, str] = {}
    for result in results:
        if result.status != "ok":
            continue
        for key in (result.sha256, result.text_sha256):
            if key in seen:
                result.status, result.reason = "duplicate", f"same content as {seen[key]}"
                break
        else:
            seen[result.sha256] = seen[result.text_sha256] = result.source


# Tokens are estimated from characters (about 4 per token for English with the BPE tokenizers in use), so that a
# corpus splits the same whatever model later trains on it and without loading a tokenizer.
CHARS_PER_TOKEN = 4
# Fewer held-out documents than this and a perplexity rests on whichever document the hash picked.
MIN_HELD_OUT_DOCUMENTS = 2
STRATIFY_FIELDS = ("folder", "kind", "language")


@dataclass(frozen=True)
class SplitDocument:
    """What the splitter needs of a document: its id, its estimated size in tokens, and its stratum."""

    id: str
    tokens: int
    stratum: str = ""


def estimate_tokens(characters: int) -> int:
    return -(-characters // CHARS_PER_TOKEN)


def _hash_order(documents: list[SplitDocument], seed: int) -> list[SplitDocument]:
    """A seeded order by hash of id: it does not depend on the input order, and a document added later does not
    reshuffle the others. Strata take turns, so a held-out split drawn from the front mixes them."""
    strata: dict[str, list[SplitDocument]] = {}
    for document in sorted(documents, key=lambda d: hashlib.sha256(f"{seed}:{d.id}".encode()).hexdigest()):
        strata.setdefault(document.stratum, []).append(document)
    queues = [strata[name] for name in sorted(strata)]
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def split_documents(
    documents: list[SplitDocument], ratios: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Assign whole documents to train / validation / test, deterministically for a seed and a set of documents.

    Test, then validation, take documents in `_hash_order` until each holds at least its share of the corpus's
    tokens (`ratios`, normalised) and at least `MIN_HELD_OUT_DOCUMENTS` documents, as long as train keeps at
    least half of the documents; a corpus too small for that gives each held-out split one document (three or
    more documents) or none (fewer: everything trains).
    """
    order = _hash_order(documents, seed)
    n = len(order)
    total_tokens = sum(d.tokens for d in order)
    shares = [r / sum(ratios) for r in ratios]
    if n >= 4 * MIN_HELD_OUT_DOCUMENTS:
        wanted_docs, train_keeps = MIN_HELD_OUT_DOCUMENTS, -(-n // 2)
    else:
        wanted_docs, train_keeps = (1, 1) if n >= 3 else (0, n)
    held_out: dict[str, list[SplitDocument]] = {}
    for split, share in (("test", shares[2]), ("validation", shares[1])):
        taken, tokens = [], 0
        room = n - train_keeps - sum(map(len, held_out.values()))
        if split == "test" and shares[1] > 0:
            room -= wanted_docs  # leave validation its documents
        while share > 0 and len(taken) < room:
            if len(taken) >= wanted_docs and tokens * (1 + 1e-9) >= share * total_tokens:
                break
            taken.append(order.pop(0))
            tokens += taken[-1].tokens
        held_out[split] = taken
    return {
        "train": [d.id for d in order],
        "validation": [d.id for d in held_out["validation"]],
        "test": [d.id for d in held_out["test"]],
    }


def document_stratum(result: FileResult, field: str | None, root: Path | None) -> str:
    """The value of a manifest field that `extract --stratify` balances the held-out splits over."""
    if not field:
        return ""
    if field == "folder":
        parent = Path(result.source).parent
        return str(parent.relative_to(root)) if root and parent.is_relative_to(root) else str(parent)
    return str(getattr(result, field))


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


def _records(entries: list[dict]) -> Iterator[dict]:
    """Document records; an entry holds its text, or where to read it in the cache ("cache": [file, offset])."""
    for entry in entries:
        text = entry["text"] if "text" in entry else CachedText(Path(entry["cache"][0]), entry["cache"][1]).text()
        yield {**{c: entry[c] for c in COLUMNS if c != "text"}, "text": text}


def split_dataset(entries: list[dict], arrow_dir: Path):
    """One split, written to Arrow a document at a time (memory stays flat); an empty split keeps its columns."""
    from datasets import Dataset

    if not entries:
        return Dataset.from_dict({c: [] for c in COLUMNS}, features=document_features())
    return Dataset.from_generator(
        _records, features=document_features(), gen_kwargs={"entries": entries}, cache_dir=str(arrow_dir)
    )


def corpus_stats(dataset_dict) -> dict:
    stats = {}
    for split in SPLITS:
        ds = dataset_dict[split]
        stats[split] = {
            "documents": len(ds),
            "pages": sum(ds["pages"]),
            "characters": sum(ds["characters"]),
            "tokens_estimate": sum(estimate_tokens(c) for c in ds["characters"]),
            "words": sum(len(t.split()) for t in ds["text"]),
        }
    stats["total"] = {key: sum(stats[s][key] for s in SPLITS) for key in stats["train"]}
    return stats


@contextlib.contextmanager
def corpus_lock(corpus_dir: Path):
    """One writer at a time: a second `extract` into the same folder fails at once with one line."""
    lock_path = corpus_dir / ".lock"
    with open(lock_path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise CorpusError(f"{corpus_dir} is being written by {holder}; wait for it to finish") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"`climate-sft extract` (pid {os.getpid()})")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)  # an empty file says nobody is writing
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_corpus(corpus_dir: Path, splits: dict[str, list[dict]], manifest: str, stats: dict) -> Path:
    """Write a build whole (dataset, manifest, stats) and switch CURRENT to it; clean what earlier builds left.
    `splits` maps split names to document entries (see `_records`). The caller holds `corpus_lock`."""
    from datasets import DatasetDict

    builds = corpus_dir / "builds"
    name = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]  # readable, and unique within a second
    tmp = builds / f".{name}.tmp"
    tmp.mkdir(parents=True)
    dataset_dict = DatasetDict({split: split_dataset(entries, tmp / "arrow") for split, entries in splits.items()})
    # an empty split still needs its one (empty) Arrow file, or it will not load back
    dataset_dict.save_to_disk(str(tmp / "dataset"), num_shards={s: 1 for s, d in dataset_dict.items() if not len(d)})
    shutil.rmtree(tmp / "arrow", ignore_errors=True)
    stats = {**corpus_stats(dataset_dict), **stats}
    (tmp / "manifest.jsonl").write_text(manifest, encoding="utf-8")
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, builds / name)
    write_atomic(corpus_dir / "CURRENT", name + "\n")  # the switch: readers now see the new build
    for old in builds.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    (corpus_dir / "manifest.failed.jsonl").unlink(missing_ok=True)
    return builds / name


def build_corpus(
    source: str | Path | HubDataset = SAMPLE_PDF_DIR,
    output_dir: str | Path = "data/corpus",
    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05),
    seed: int = 42,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    text_field: str = "text",
    ocr: bool = False,
    keep_back_matter: bool = False,
    languages: list[str] | None = None,
    stratify: str | None = None,
) -> tuple[dict, list[FileResult]]:
    """Extract, deduplicate, split and save. Returns (stats, per-input results); with `shard`, extract only.

    `text_field` names the text of `.jsonl` records and dataset rows. `ocr`: read pages without a text layer
    with Tesseract. `keep_back_matter`: keep reference lists and licence boilerplate. `languages`: keep only
    documents detected in these ISO 639-1 languages. `ratios` are each split's share of the estimated tokens
    and `stratify` a manifest field (`STRATIFY_FIELDS`) whose values take turns in the held-out splits
    (`split_documents`).
    """
    from datasets import disable_progress_bars

    disable_progress_bars()  # the extraction bar and the summary say all there is to say

    output_dir = Path(output_dir)
    if stratify and stratify not in STRATIFY_FIELDS:
        raise CorpusError(f"--stratify {stratify}: give one of {', '.join(STRATIFY_FIELDS)} (a manifest field)")
    if not isinstance(source, HubDataset):
        source = Path(source)
        if not source.is_dir() and not (source.is_file() and source.suffix.lower() == ".jsonl"):
            what = "no such folder or file" if not source.exists() else "not a folder or a .jsonl file"
            raise CorpusError(
                f"{source}: {what}; pass a folder of PDFs, .txt or .md files, a .jsonl file, or --dataset_name NAME"
            )
    if ocr:
        from climate_sft.pdf_text import INSTALL_TESSERACT, ocr_available  # pymupdf: only where PDFs are read

        if not ocr_available():
            raise CorpusError(f"--ocr needs Tesseract, which is not on PATH: {INSTALL_TESSERACT}")
    if output_dir.exists() and not output_dir.is_dir():
        raise CorpusError(f"--output {output_dir} is a file; give a folder for the corpus")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise CorpusError(
            f"--output {output_dir}: cannot write there ({error.strerror}); choose another folder"
        ) from None
    if shard:
        if isinstance(source, HubDataset) or not source.is_dir():
            raise CorpusError(f"--shard shares out PDF extraction: {source} is not a folder of PDFs")
        found = extract_folder(source, output_dir / "cache", workers, shard, ocr, keep_back_matter)
        return {}, [result for result, _ in found]
    spool = output_dir / ".inputs.tmp.jsonl"
    with corpus_lock(output_dir), contextlib.ExitStack() as cleanup:
        cleanup.callback(spool.unlink, missing_ok=True)
        pdf_options = dict(ocr=ocr, keep_back_matter=keep_back_matter)
        found = read_inputs(source, output_dir / "cache", spool, workers, text_field, **pdf_options)
        results = [result for result, _ in found]
        if languages:
            keep_languages(results, languages)
        mark_duplicates(results)
        manifest = "".join(json.dumps(asdict(r)) + "\n" for r in results)
        documents = {
            r.id: {**{c: getattr(r, c) for c in COLUMNS if c != "text"}, "cache": [str(text.path), text.offset]}
            for r, text in found
            if r.status == "ok"
        }
        if not documents:
            # The previous corpus stays as it was; this build's reasons go beside it.
            write_atomic(output_dir / "manifest.failed.jsonl", manifest)
            raise CorpusError(
                f"no usable document among {len(results)} input(s) in {source}; "
                f"see {output_dir / 'manifest.failed.jsonl'} for each file's reason"
            )
        root = source if isinstance(source, Path) and source.is_dir() else None
        to_split = [
            SplitDocument(r.id, estimate_tokens(r.characters), document_stratum(r, stratify, root))
            for r in results
            if r.status == "ok"
        ]
        assignment = split_documents(to_split, ratios, seed)
        files = {status: sum(r.status == status for r in results) for status in ("ok", "skipped", "duplicate")}
        back_matter = sum(r.back_matter_chars for r in results if r.status == "ok")
        extra = {
            "files": files,
            "back_matter_chars_dropped": back_matter,
            "seed": seed,
            "ratios": list(ratios),
            "stratify": stratify,
            "tokens_estimated_as": f"characters / {CHARS_PER_TOKEN}, rounded up, per document",
        }
        splits = {split: [documents[i] for i in sorted(ids)] for split, ids in assignment.items()}
        build = write_corpus(output_dir, splits, manifest, extra)
    return json.loads((build / "stats.json").read_text()), results


def current_build(corpus_dir: str | Path) -> Path:
    """The folder of the corpus in use; CorpusError naming the folder and what to do when there is none."""
    corpus_dir = Path(corpus_dir)
    try:
        name = (corpus_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        raise CorpusError(
            f"{corpus_dir} holds no corpus; build it with `climate-sft extract PDF_DIR --output {corpus_dir}`"
        ) from None
    build = corpus_dir / "builds" / name
    if not name or not build.is_dir():
        raise CorpusError(f"{corpus_dir}/CURRENT names no build folder: the corpus is damaged; rebuild it")
    return build


def check_corpus(corpus_dir: str | Path) -> dict[str, int]:
    """Documents per split of a saved corpus, from its index and stats alone; CorpusError naming the folder when
    it is missing or damaged."""
    build = current_build(corpus_dir)
    try:
        splits = json.loads((build / "dataset" / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        stats = json.loads((build / "stats.json").read_text(encoding="utf-8"))
        return {split: stats[split]["documents"] for split in splits}
    except (OSError, ValueError, KeyError, TypeError):
        raise CorpusError(f"{build} is incomplete or unreadable: the corpus is damaged; rebuild it") from None


def load_corpus(corpus_dir: str | Path):
    """The DatasetDict that `build_corpus` saved. Raises `CorpusError` naming the folder if there is none."""
    from datasets import load_from_disk

    check_corpus(corpus_dir)
    return load_from_disk(str(current_build(corpus_dir) / "dataset"))


def corpus_manifest(corpus_dir: str | Path) -> list[dict]:
    """The manifest lines of the corpus in use, one per input file."""
    text = (current_build(corpus_dir) / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_record(corpus_dir: str | Path, corpus) -> dict:
    """Which documents (id and content hash) each split of the corpus holds, and where the corpus is: a run
    keeps this so that its evaluation scores exactly the documents it held out."""
    return {
        "corpus_dir": str(Path(corpus_dir).resolve()),
        "build": current_build(corpus_dir).name,
        "splits": {
            split: [{"id": i, "sha256": text_sha256(t)} for i, t in zip(ds["id"], ds["text"])]
            for split, ds in corpus.items()
        },
    }


def read_run_record(run_dir: str | Path) -> dict:
    """A run's data.json (`split_record`), whole, or one line naming it as damaged."""
    fix = "it names the documents the run held out: rerun the same `climate-sft train` command, which rewrites it"
    record = read_mapping(Path(run_dir) / "data.json", fix, keys=("corpus_dir", "build", "splits"))
    splits = record["splits"]
    lists = isinstance(splits, dict) and "train" in splits and all(isinstance(v, list) for v in splits.values())
    documents = [d for split in splits.values() for d in split] if lists else []
    if not documents or not all(isinstance(d, dict) and {"id", "sha256"} <= set(d) for d in documents):
        raise DamagedFile(f"{Path(run_dir) / 'data.json'} is damaged (its splits are not lists of documents): {fix}")
    return record


def held_out_documents(record: dict, split: str) -> tuple[list[dict], str | None]:
    """The documents the record names for `split`, found by content hash in the corpus as it is now, and a note
    when that corpus was rebuilt since. CorpusError when one is missing or was trained on."""
    wanted = record["splits"].get(split)
    if wanted is None:
        raise CorpusError(f"the run's data.json has no '{split}' split (it has {', '.join(record['splits'])})")
    trained = {d["sha256"] for d in record["splits"]["train"]}
    overlap = [d["id"] for d in wanted if d["sha256"] in trained]
    if overlap:
        raise CorpusError(f"the run trained on {len(overlap)} of its {split} document(s) (e.g. {overlap[0]}): refusing")
    corpus = load_corpus(record["corpus_dir"])
    found = {}
    for ds in corpus.values():
        for row in ds:
            found.setdefault(text_sha256(row["text"]), row)
    missing = [d["id"] for d in wanted if d["sha256"] not in found]
    if missing:
        raise CorpusError(
            f"{record['corpus_dir']} no longer holds {len(missing)} of the run's {len(wanted)} {split} document(s) "
            f"(e.g. {missing[0]}): evaluate against the corpus the run was trained from"
        )
    rebuilt = current_build(record["corpus_dir"]).name != record["build"]
    note = (
        f"the corpus was rebuilt since training; scoring the run's own {len(wanted)} {split} documents"
        if rebuilt
        else None
    )
    return [found[d["sha256"]] for d in wanted], note


def shard_summary(shard: tuple[int, int], results: list[FileResult], output_dir: Path) -> str:
    """The report printed at the end of `climate-sft extract --shard I/N`."""
    cached = sum(r.from_cache for r in results)
    ok = sum(r.status == "ok" for r in results)
    return (
        f"shard {shard[0]}/{shard[1]}: {len(results)} PDF(s), {ok} with text ({len(results) - cached} extracted, "
        f"{cached} from cache) into {output_dir / 'cache'}; when every shard is done, run the same command "
        "without --shard to build the corpus from the cache"
    )


def summary(stats: dict, results: list[FileResult], output_dir: Path) -> str:
    """The report printed at the end of `climate-sft extract`."""
    lines = []
    for r in results:
        if r.status != "ok":
            lines.append(f"  {r.status:9s} {r.source}: {r.reason}")
        for warning in r.warnings:
            lines.append(f"  warning   {r.source}: {warning}")
    cached = sum(r.from_cache for r in results)
    inputs = "PDF(s)" if all(r.kind == "pdf" for r in results) else "input(s)"
    head = (
        f"{len(results)} {inputs}: {stats['files']['ok']} documents, {stats['files']['skipped']} skipped, "
        f"{stats['files']['duplicate']} duplicate ({len(results) - cached} extracted, {cached} from cache)"
    )
    table = [f"  {'split':10s} {'docs':>5s} {'pages':>6s} {'chars':>9s} {'words':>8s} {'~tokens':>8s}"] + [
        f"  {s:10s} {stats[s]['documents']:5d} {stats[s]['pages']:6d} {stats[s]['characters']:9d} "
        f"{stats[s]['words']:8d} {stats[s]['tokens_estimate']:8d}"
        for s in (*SPLITS, "total")
    ]
    empty = [f"  note: the {s} split is empty (too few documents)" for s in SPLITS[1:] if not stats[s]["documents"]]
    small = small_test_split_note(stats["test"]["documents"], f"~{stats['test']['tokens_estimate']}")
    back = f"  back matter dropped: {stats['back_matter_chars_dropped']} characters (kept with --keep-back-matter)"
    build = current_build(output_dir)
    where = f"corpus written to {build} (manifest.jsonl, stats.json), in use through {output_dir}/CURRENT"
    tokens = f"  ~tokens: {stats['tokens_estimated_as']} (no tokenizer loaded); split by share of these" + (
        f", held-out splits stratified by {stats['stratify']}" if stats.get("stratify") else ""
    )
    return "\n".join([head, *lines, *table, tokens, *empty, *([f"  note: {small}"] if small else []), back, where])


def small_test_split_note(documents: int, tokens: int | str) -> str | None:
    """One line when a test split of `documents` is too small for a perplexity with an interval, else None."""
    if 0 < documents < MIN_HELD_OUT_DOCUMENTS:
        return (
            f"the test split has {documents} document ({tokens} tokens): too few for a perplexity with a "
            f"confidence interval; at least {4 * MIN_HELD_OUT_DOCUMENTS} documents give {MIN_HELD_OUT_DOCUMENTS} "
            "test documents"
        )
    return None
