"""Corpus building: splits by document, cache, duplicates, bad files, and never losing a built corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import prose_pages, write_pdf

from climate_sft.corpus import (
    CorpusError,
    SplitDocument,
    build_corpus,
    corpus_lock,
    corpus_manifest,
    current_build,
    estimate_tokens,
    load_corpus,
    small_test_split_note,
    split_documents,
    summary,
    write_checksums,
)
from climate_sft.pdf_text import CLEANER_VERSION


def _documents(n: int, sizes=(1000,), strata=("",)) -> list[SplitDocument]:
    return [SplitDocument(f"doc{i:03d}", sizes[i % len(sizes)], strata[i % len(strata)]) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 10, 57])
def test_split_is_by_document_and_complete(n):
    splits = split_documents(_documents(n, sizes=(300, 5000, 1200)), (0.9, 0.05, 0.05), seed=1)
    assigned = [i for split in splits.values() for i in split]
    assert sorted(assigned) == [f"doc{i:03d}" for i in range(n)]  # every document exactly once
    sizes = [len(splits[s]) for s in ("train", "validation", "test")]
    if n >= 8:
        assert sizes[1] >= 2 and sizes[2] >= 2 and sizes[0] >= n / 2
    elif n >= 3:
        assert min(sizes) >= 1
    else:
        assert sizes == [n, 0, 0]


def test_held_out_splits_get_their_share_of_tokens_not_of_documents():
    # A few long documents among many short ones: a share of documents would give far fewer tokens
    documents = _documents(60, sizes=(200, 200, 200, 200, 200, 8000))
    total = sum(d.tokens for d in documents)
    tokens = {d.id: d.tokens for d in documents}
    for seed in range(5):
        splits = split_documents(documents, (0.8, 0.1, 0.1), seed=seed)
        for split in ("validation", "test"):
            held = sum(tokens[i] for i in splits[split])
            assert held >= 0.1 * total and len(splits[split]) >= 2
            # and not much more: taking stops once the share is reached
            assert held - max(tokens[i] for i in splits[split]) < 0.1 * total


def test_split_is_deterministic_whatever_the_input_order():
    documents = _documents(40)
    first = split_documents(documents, (0.8, 0.1, 0.1), seed=7)
    assert split_documents(list(reversed(documents)), (0.8, 0.1, 0.1), seed=7) == first
    assert split_documents(documents, (0.8, 0.1, 0.1), seed=8) != first
    assert [len(first[s]) for s in ("train", "validation", "test")] == [31, 4, 5]  # 20+ documents: 5 to test


def test_stratified_held_out_splits_mix_the_kinds():
    mixed = _documents(20, strata=("slides", "paper"))
    kind = {d.id: d.stratum for d in mixed}
    plain = [d.__class__(d.id, d.tokens) for d in mixed]  # the same documents, no stratum
    one_kind_seeds = [
        seed
        for seed in range(40)
        if len({kind[i] for i in split_documents(plain, (0.9, 0.05, 0.05), seed)["test"]}) == 1
    ]
    assert one_kind_seeds  # the control: an unstratified test split is sometimes all one kind
    for seed in one_kind_seeds:
        splits = split_documents(mixed, (0.9, 0.05, 0.05), seed)
        assert {kind[i] for i in splits["test"]} == {"slides", "paper"}
        assert {kind[i] for i in splits["validation"]} == {"slides", "paper"}


def test_a_test_split_too_small_for_an_interval_says_so_in_one_line():
    line = small_test_split_note(1, "~900")
    assert "1 document (~900 tokens)" in line and "too few" in line and "\n" not in line
    line = small_test_split_note(2, 1800)
    assert "rests on 3 possible resamples" in line and "20 or more documents" in line and "\n" not in line
    assert small_test_split_note(5, 1800) is None and small_test_split_note(0, 0) is None


@pytest.mark.parametrize("n", [20, 21, 30, 57, 200])
def test_twenty_documents_or_more_give_five_test_documents(n):
    # documents of one size: a 5 % token share alone is met by one or two of them
    documents = [SplitDocument(f"doc{i:03d}", 1000) for i in range(n)]
    for seed in range(5):
        splits = split_documents(documents, (0.9, 0.05, 0.05), seed)
        assert len(splits["test"]) >= 5 and len(splits["validation"]) >= 2 and len(splits["train"]) >= n / 2
    nineteen = split_documents(documents[:19], (0.9, 0.05, 0.05), seed=0)
    assert len(nineteen["test"]) == 2  # control: below 20 documents the old minimum holds


def test_a_near_duplicate_group_never_straddles_the_split_and_the_rest_still_spread():
    # 30 documents, 5 groups of 3 near-duplicates and 15 alone
    documents = [SplitDocument(f"doc{i:03d}", 100 + 37 * i, group=f"g{i // 3}" if i < 15 else "") for i in range(30)]
    group_of = {d.id: d.group for d in documents if d.group}
    straddled_without_groups = 0
    for seed in range(30):
        splits = split_documents(documents, (0.6, 0.2, 0.2), seed)
        where = {i: split for split, ids in splits.items() for i in ids}
        for group in set(group_of.values()):
            assert len({where[i] for i, g in group_of.items() if g == group}) == 1, (seed, group)
        assert all(len(ids) >= 2 for ids in splits.values())  # the rest still spread over all three
        plain = split_documents([SplitDocument(d.id, d.tokens) for d in documents], (0.6, 0.2, 0.2), seed)
        where = {i: split for split, ids in plain.items() for i in ids}
        straddled_without_groups += any(
            len({where[i] for i, g in group_of.items() if g == group}) > 1 for group in set(group_of.values())
        )
    assert straddled_without_groups > 0  # control: without groups the same documents do straddle


def test_build_saves_a_datasetdict_and_stats(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    stats, results = build_corpus(pdf_dir, out, workers=1)
    ds = load_corpus(out)
    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(ds[s]) for s in ds) == 3 == stats["total"]["documents"]
    ids = [i for s in ds for i in ds[s]["id"]]
    assert len(set(ids)) == 3
    on_disk = json.loads((current_build(out) / "stats.json").read_text())
    assert on_disk["total"]["pages"] == 6 and on_disk["total"]["characters"] == sum(
        len(t) for s in ds for t in ds[s]["text"]
    )
    for split in ("train", "validation", "test", "total"):  # tokens estimated from characters, per document
        chars = [len(t) for s in (ds if split == "total" else [split]) for t in ds[s]["text"]]
        assert on_disk[split]["tokens_estimate"] == sum(estimate_tokens(c) for c in chars)
    assert on_disk["total"]["tokens_estimate"] > 0
    record = ds["train"][0]
    assert record["source"].endswith(".pdf") and record["pages"] == 2 and record["title"].startswith("Document number")


def test_stratify_by_folder_holds_out_the_lone_subfolder_and_the_summary_warns(pdf_dir, tmp_path):
    # two documents at the top, one in sub/: folders take turns, so sub/'s document is never left to train
    for seed in range(4):
        out = tmp_path / f"corpus{seed}"
        stats, results = build_corpus(pdf_dir, out, seed=seed, workers=1, stratify="folder")
        ds = load_corpus(out)
        held_out = [*ds["validation"]["source"], *ds["test"]["source"]]
        assert any("/sub/" in source for source in held_out) and stats["stratify"] == "folder"
    text = summary(stats, results, out)
    assert "~tokens" in text and "stratified by folder" in text
    assert "the test split has 1 document" in text and "too few for a perplexity with a confidence interval" in text
    with pytest.raises(CorpusError, match="--stratify colour: give one of folder, kind, language"):
        build_corpus(pdf_dir, tmp_path / "other", workers=1, stratify="colour")


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


def test_a_truncated_pdf_beside_the_whole_one_is_a_near_duplicate(pdf_dir, tmp_path):
    whole = write_pdf(pdf_dir / "report.pdf", [["Coastal flooding report"], *prose_pages(4, header="Coast")])
    data = whole.read_bytes()
    (pdf_dir / "report_cut.pdf").write_bytes(data[: int(len(data) * 0.6)])  # a download cut short
    out = tmp_path / "corpus"
    stats, results = build_corpus(pdf_dir, out, workers=1)
    by_name = {Path(r.source).name: r for r in results}
    kept, cut = by_name["report.pdf"], by_name["report_cut.pdf"]
    assert kept.status == "ok" and cut.status == "near_duplicate" and cut.near_duplicate_of == kept.id
    assert "near-duplicate of" in cut.reason and "report.pdf" in cut.reason and kept.group == cut.group == kept.id
    assert stats["files"]["near_duplicate"] == 1 and stats["near_duplicates"]["groups"] == 1
    assert stats["total"]["documents"] == 4  # doc0-2 and the whole report: the other reports are no group
    assert all(by_name[f"doc{i}.pdf"].group == "" for i in (0, 1))
    manifest = {Path(m["source"]).name: m for m in corpus_manifest(out)}
    assert manifest["report_cut.pdf"]["near_duplicate_of"] == kept.id
    stats, results = build_corpus(pdf_dir, out, workers=1, keep_near_duplicates=True)
    assert stats["total"]["documents"] == 5 and stats["files"]["near_duplicate"] == 0
    corpus = load_corpus(out)
    where = {i: split for split in corpus for i in corpus[split]["id"]}
    ids = {Path(r.source).name: r.id for r in results}
    assert where[ids["report.pdf"]] == where[ids["report_cut.pdf"]]  # kept together, in one split


def test_bad_files_are_skipped_with_a_reason_in_the_manifest(pdf_dir, tmp_path):
    (pdf_dir / "empty.pdf").write_bytes(b"")
    (pdf_dir / "junk.pdf").write_bytes(b"\x00\x01 this is not a pdf" * 10)
    out = tmp_path / "corpus"
    stats, _ = build_corpus(pdf_dir, out, workers=2)
    assert stats["total"]["documents"] == 3 and stats["files"]["skipped"] == 2
    manifest = corpus_manifest(out)
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
    assert not any("empty.pdf" in m["source"] for m in corpus_manifest(out))
    assert "empty.pdf" in (out / "manifest.failed.jsonl").read_text()
    build_corpus(pdf_dir, out, workers=1)
    assert not (out / "manifest.failed.jsonl").exists()  # a good build clears the stale reasons


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


def test_manifest_reports_language_quality_and_rules_and_languages_filter(pdf_dir, tmp_path):
    french = [
        "Le niveau de la mer monte parce que les océans se réchauffent et que les glaciers",
        "fondent depuis le début du siècle dernier, et cette hausse s'accélère encore.",
        "",
        "References",
        "",
        "Dupont, J. (2020). Les mers. Paris, 1-9.",
    ]
    write_pdf(pdf_dir / "fr.pdf", [french])
    out = tmp_path / "corpus"
    stats, results = build_corpus(pdf_dir, out, workers=1, languages=["en"])
    manifest = {Path(m["source"]).name: m for m in corpus_manifest(out)}
    assert manifest["fr.pdf"]["status"] == "skipped"
    assert manifest["fr.pdf"]["reason"] == "language fr, not in --languages en"
    assert manifest["fr.pdf"]["back_matter_chars"] > 0 and "drop_back_matter" in manifest["fr.pdf"]["rules"]
    english = manifest["doc0.pdf"]
    assert english["language"] == "en" and english["alphabetic_words"] > 0.9 and english["ocr_pages"] == []
    assert "drop_page_furniture" in english["rules"]
    assert stats["total"]["documents"] == 3 and stats["back_matter_chars_dropped"] == 0  # counted for the corpus
    stats, _ = build_corpus(pdf_dir, out, workers=1)
    assert stats["back_matter_chars_dropped"] == manifest["fr.pdf"]["back_matter_chars"] > 0


def test_ocr_without_tesseract_fails_before_extracting(pdf_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("climate_sft.pdf_text.ocr_available", lambda: False)
    with pytest.raises(CorpusError, match="--ocr needs Tesseract.*apt-get install tesseract-ocr"):
        build_corpus(pdf_dir, tmp_path / "corpus", workers=1, ocr=True)


def assert_consistent(corpus_dir: Path) -> int:
    """Dataset, manifest and stats of the corpus in use describe the same documents; returns their count."""
    dataset = load_corpus(corpus_dir)
    ids = sorted(i for split in dataset.values() for i in split["id"])
    manifest_ids = sorted(m["id"] for m in corpus_manifest(corpus_dir) if m["status"] == "ok")
    stats = json.loads((current_build(corpus_dir) / "stats.json").read_text())
    assert ids == manifest_ids, "dataset and manifest disagree"
    assert stats["total"]["documents"] == len(ids), "stats and dataset disagree"
    return len(ids)


def test_the_consistency_check_catches_a_mixed_corpus(pdf_dir, tmp_path):
    """Control: what the old writer could leave (one build's dataset, another's manifest) fails the check."""
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    first = current_build(out)
    (pdf_dir / "sub" / "doc2.pdf").unlink()
    build_corpus(pdf_dir, out, workers=1)
    (current_build(out) / "manifest.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in [*corpus_manifest(out), {"id": "gone", "status": "ok"}])
    )
    assert not first.exists()  # the old build was cleaned away
    with pytest.raises(CorpusError, match="manifest.jsonl has .* the corpus is damaged"):
        load_corpus(out)  # the build's checksums catch the mixed manifest first
    write_checksums(current_build(out))  # as if the mix had been written with them
    with pytest.raises(AssertionError, match="disagree"):
        assert_consistent(out)


@pytest.mark.parametrize("fail_at", ["save", "rename", "switch"])
def test_a_build_that_dies_midway_leaves_the_previous_corpus_whole(pdf_dir, tmp_path, monkeypatch, fail_at):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    before = (current_build(out), assert_consistent(out))
    write_pdf(pdf_dir / "new.pdf", [["A new report on glaciers"], *prose_pages(2)])
    import climate_sft.corpus as corpus

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    target = {
        "save": ("datasets.DatasetDict.save_to_disk", crash),
        "rename": ("os.replace", crash),
        "switch": ("climate_sft.corpus.write_atomic", crash),
    }[fail_at]
    with monkeypatch.context() as patch:
        patch.setattr(*target)
        with pytest.raises(OSError, match="simulated"):
            corpus.build_corpus(pdf_dir, out, workers=1)
    assert (current_build(out), assert_consistent(out)) == before
    build_corpus(pdf_dir, out, workers=1)  # the next good build takes the new file and cleans up
    assert assert_consistent(out) == 4
    assert [p.name for p in (out / "builds").iterdir()] == [current_build(out).name]


def test_a_second_writer_fails_at_once_with_one_line(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    with corpus_lock(out), pytest.raises(CorpusError) as info:
        build_corpus(pdf_dir, out, workers=1)
    assert "is being written by `climate-sft extract` (pid" in str(info.value) and "\n" not in str(info.value)
    build_corpus(pdf_dir, out, workers=1)  # released: the next build goes through


@pytest.mark.parametrize("documents", [1, 2])
def test_a_corpus_of_one_or_two_documents_builds(tmp_path, documents):
    root = tmp_path / "pdfs"
    root.mkdir()
    for i in range(documents):
        write_pdf(root / f"d{i}.pdf", [[f"Report {i} on snow"], *prose_pages(1, header=f"Snow {i}")])
    stats, _ = build_corpus(root, tmp_path / "corpus", workers=1)
    assert stats["train"]["documents"] >= 1 and stats["total"]["documents"] == documents
    assert stats["validation"]["documents"] == 0
    assert len(load_corpus(tmp_path / "corpus")["validation"]) == 0


def test_ctrl_c_keeps_the_corpus_and_says_how_far_it_got(pdf_dir, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    before = current_build(out)
    for i in range(3):
        write_pdf(pdf_dir / f"more{i}.pdf", [[f"More on ice {i}"], *prose_pages(1, header=f"More {i}")])
    import climate_sft.corpus as corpus

    real, calls = corpus.extract_file, []

    def interrupted_at_the_second(path, sha, *options):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, sha, *options)

    monkeypatch.setattr(corpus, "extract_file", interrupted_at_the_second)
    with pytest.raises(CorpusError) as info:
        corpus.build_corpus(pdf_dir, out, workers=1)
    assert "interrupted after extracting 1 of 3 new PDF(s)" in str(info.value) and "not changed" in str(info.value)
    assert current_build(out) == before and assert_consistent(out) == 3
    monkeypatch.undo()
    _, results = build_corpus(pdf_dir, out, workers=1)
    assert sum(not r.from_cache for r in results) == 2  # the one done before Ctrl-C came from the cache


def test_ctrl_c_while_writing_leaves_the_old_corpus(pdf_dir, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    before = (current_build(out), assert_consistent(out))
    write_pdf(pdf_dir / "new.pdf", [["A new report on glaciers"], *prose_pages(2, header="Glaciers")])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("datasets.DatasetDict.save_to_disk", interrupted)
    with pytest.raises(CorpusError, match="interrupted while writing the new build; the corpus in use") as info:
        build_corpus(pdf_dir, out, workers=1)
    assert "\n" not in str(info.value)
    assert (current_build(out), assert_consistent(out)) == before
    assert [p.name for p in (out / "builds").iterdir()] == [before[0].name]  # no half-written build left
    monkeypatch.undo()
    assert build_corpus(pdf_dir, out, workers=1)[0]["total"]["documents"] == 4


@pytest.mark.parametrize(
    "damage, named",
    [
        ("delete split folder", "dataset/test"),
        ("truncate arrow", ".arrow"),
        ("zero arrow", ".arrow"),
        ("garbage dataset_info", "dataset_info.json"),
    ],
)
def test_a_damaged_build_is_named_when_loaded(pdf_dir, tmp_path, damage, named):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    load_corpus(out)  # control: the whole build loads
    build = current_build(out)
    arrow = next((build / "dataset" / "train").glob("data-*.arrow"))  # not a cache file datasets wrote beside it
    if damage == "delete split folder":
        shutil.rmtree(build / "dataset" / "test")
    elif damage == "truncate arrow":
        arrow.write_bytes(arrow.read_bytes()[:100])
    elif damage == "zero arrow":
        arrow.write_bytes(bytes(arrow.stat().st_size))  # same size: only the checksum can tell
    else:
        (build / "dataset" / "train" / "dataset_info.json").write_text("{garbage")
    with pytest.raises(CorpusError, match="the corpus is damaged; rebuild it") as info:
        load_corpus(out)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_output_that_is_a_file_or_cannot_be_made(pdf_dir, tmp_path):
    a_file = tmp_path / "corpus.txt"
    a_file.write_text("notes")
    with pytest.raises(CorpusError, match="is a file; give a folder"):
        build_corpus(pdf_dir, a_file)
    with pytest.raises(CorpusError, match="cannot write there"):
        build_corpus(pdf_dir, a_file / "sub")
    assert a_file.read_text() == "notes"


def test_two_shards_then_a_plain_run_builds_from_their_caches(pdf_dir, tmp_path, monkeypatch):
    for i in range(3):
        write_pdf(pdf_dir / f"more{i}.pdf", [[f"More on ice {i}"], *prose_pages(1, header=f"More {i}")])
    out = tmp_path / "corpus"
    shares = [build_corpus(pdf_dir, out, workers=1, shard=(i, 2))[1] for i in (0, 1)]
    assert sorted(r.source for share in shares for r in share) == sorted(str(p) for p in pdf_dir.rglob("*.pdf"))
    assert not (out / "CURRENT").exists()  # a shard only extracts
    calls = []
    monkeypatch.setattr("climate_sft.pdf_text.read_pdf", lambda *args, **kwargs: calls.append(args))
    stats, results = build_corpus(pdf_dir, out, workers=1)
    assert calls == [] and all(r.from_cache for r in results) and stats["total"]["documents"] == 6
    plain = tmp_path / "plain"
    monkeypatch.undo()
    build_corpus(pdf_dir, plain, workers=1)
    assert load_corpus(out)["train"]["text"] == load_corpus(plain)["train"]["text"]


def test_cache_files_are_per_option(pdf_dir, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    _, results = build_corpus(pdf_dir, out, workers=1, keep_back_matter=True)
    assert not any(r.from_cache for r in results)  # other options, other text: not read from the first cache
    stem = f"extract-v{CLEANER_VERSION}"
    assert sorted(p.name for p in (out / "cache").iterdir()) == [f"{stem}-keep-back-matter.jsonl", f"{stem}.jsonl"]
