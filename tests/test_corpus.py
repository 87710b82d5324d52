"""Corpus building: splits by document, cache, duplicates, bad files, and never losing a built corpus."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import prose_pages, write_pdf

from climate_sft.corpus import CorpusError, build_corpus, load_corpus, split_documents


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 57])
def test_split_is_by_document_and_complete(n):
    ids = [f"doc{i:03d}" for i in range(n)]
    splits = split_documents(ids, (0.9, 0.05, 0.05), seed=1)
    assigned = [i for split in splits.values() for i in split]
    assert sorted(assigned) == sorted(ids)  # every document exactly once: none spans two splits
    if n >= 3:
        assert all(len(splits[s]) >= 1 for s in ("train", "validation", "test"))


def test_split_is_deterministic_whatever_the_input_order():
    ids = [f"d{i}" for i in range(40)]
    first = split_documents(ids, (0.8, 0.1, 0.1), seed=7)
    assert split_documents(list(reversed(ids)), (0.8, 0.1, 0.1), seed=7) == first
    assert split_documents(ids, (0.8, 0.1, 0.1), seed=8) != first
    assert [len(first[s]) for s in ("train", "validation", "test")] == [32, 4, 4]


def test_build_saves_a_datasetdict_and_stats(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    stats, results = build_corpus(pdf_dir, out, workers=1)
    ds = load_corpus(out)
    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(ds[s]) for s in ds) == 3 == stats["total"]["documents"]
    ids = [i for s in ds for i in ds[s]["id"]]
    assert len(set(ids)) == 3
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["total"]["pages"] == 6 and on_disk["total"]["characters"] == sum(
        len(t) for s in ds for t in ds[s]["text"]
    )
    record = ds["train"][0]
    assert record["source"].endswith(".pdf") and record["pages"] == 2 and record["title"].startswith("Document number")


def test_rerun_reads_every_file_from_cache(pdf_dir, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    calls = []
    monkeypatch.setattr("climate_sft.pdf_text.read_pdf", lambda path: calls.append(path))
    _, results = build_corpus(pdf_dir, out, workers=1)
    assert calls == [] and all(r.from_cache for r in results)


def test_only_new_files_are_extracted(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    write_pdf(pdf_dir / "new.pdf", [["A new report on glaciers"], *prose_pages(1)[1:]] + prose_pages(1))
    _, results = build_corpus(pdf_dir, out, workers=2)
    assert [r.source.endswith("new.pdf") for r in results if not r.from_cache] == [True]


def test_duplicates_are_kept_once(pdf_dir, tmp_path):
    shutil.copy(pdf_dir / "doc0.pdf", pdf_dir / "sub" / "copy_of_doc0.pdf")
    stats, results = build_corpus(pdf_dir, tmp_path / "corpus", workers=1)
    assert stats["total"]["documents"] == 3 and stats["files"]["duplicate"] == 1
    duplicate = next(r for r in results if r.status == "duplicate")
    assert "doc0.pdf" in duplicate.reason


def test_bad_files_are_skipped_with_a_reason_in_the_manifest(pdf_dir, tmp_path):
    (pdf_dir / "empty.pdf").write_bytes(b"")
    (pdf_dir / "junk.pdf").write_bytes(b"\x00\x01 this is not a pdf" * 10)
    out = tmp_path / "corpus"
    stats, _ = build_corpus(pdf_dir, out, workers=2)
    assert stats["total"]["documents"] == 3 and stats["files"]["skipped"] == 2
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    reasons = {m["source"].rsplit("/", 1)[-1]: m["reason"] for m in manifest if m["status"] == "skipped"}
    assert set(reasons) == {"empty.pdf", "junk.pdf"} and all("\n" not in r and r for r in reasons.values())


def test_no_usable_document_fails_and_keeps_the_previous_corpus(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    before = load_corpus(out)["train"]["id"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    with pytest.raises(CorpusError, match="no usable document.*manifest.failed.jsonl"):
        build_corpus(bad, out, workers=1)
    assert load_corpus(out)["train"]["id"] == before
    assert "empty.pdf" not in (out / "manifest.jsonl").read_text()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no such folder"):
        build_corpus(tmp_path / "nope", tmp_path / "corpus")


def test_a_torn_cache_file_is_a_miss(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    (cache,) = (out / "cache").glob("*.jsonl")
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1] + [lines[-1][:40]]))  # the last result torn mid-write
    _, results = build_corpus(pdf_dir, out, workers=1)
    assert [r.from_cache for r in results] == [True, True, False] and all(r.status == "ok" for r in results)
