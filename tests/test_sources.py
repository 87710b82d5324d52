"""Inputs besides PDFs: folders of .txt / .md, JSON lines, `datasets` datasets (offline, local folders), all
becoming the same corpus (ids, hashes, manifest kinds, splits by document) that training and eval read."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import distinct_prose, prose_pages, recipe_maker, write_pdf

from climate_sft import cli, evaluation, train
from climate_sft.corpus import CorpusError, build_corpus, corpus_manifest, load_corpus, text_sha256
from climate_sft.sources import HubDataset, SourceError

TOPICS = ("glaciers", "sea ice", "ocean heat", "permafrost", "monsoons", "coral reefs")


def _texts(n: int = 6) -> list[str]:
    return [
        f"Notes on {topic}\n\n{distinct_prose(topic, 1 + i % 3)} {topic} matter." for i, topic in enumerate(TOPICS[:n])
    ]


@pytest.fixture
def text_dir(tmp_path):
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    for i, text in enumerate(_texts()):
        suffix = ".md" if i % 2 else ".txt"
        heading = "# " if suffix == ".md" else ""
        (root / ("sub" if i == 5 else "") / f"note{i}{suffix}").write_text(heading + text.replace("\n", "\r\n"))
    return root


@pytest.fixture
def jsonl_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"body": text, "title": f"Record {i}"}) for i, text in enumerate(_texts())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _documents(corpus_dir) -> dict[str, dict]:
    return {row["id"]: row for split in load_corpus(corpus_dir).values() for row in split}


def test_a_text_folder_becomes_a_corpus(text_dir, tmp_path):
    (text_dir / "empty.txt").write_text("  \n")
    (text_dir / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    shutil.copy(text_dir / "note0.txt", text_dir / "sub" / "copy.txt")
    (text_dir / "figure.png").write_bytes(b"\x89PNG")  # not an input: ignored
    out = tmp_path / "corpus"
    stats, results = build_corpus(text_dir, out, ratios=(0.6, 0.2, 0.2))
    assert stats["files"] == {"ok": 6, "skipped": 2, "duplicate": 1, "near_duplicate": 0}
    assert all(stats[s]["documents"] for s in ("train", "validation", "test"))
    manifest = {m["source"].rsplit("/", 1)[-1]: m for m in corpus_manifest(out)}
    assert {m["kind"] for m in manifest.values()} == {"text"} and "figure.png" not in manifest
    assert manifest["latin1.txt"]["reason"].startswith("not UTF-8") and manifest["empty.txt"]["status"] == "skipped"
    assert manifest["copy.txt"]["status"] == "duplicate"
    documents = _documents(out)
    note1 = documents[manifest["note1.md"]["id"]]
    assert note1["title"] == "Notes on sea ice" and "\r" not in note1["text"] and note1["text"].startswith("# Notes")
    assert manifest["note1.md"]["text_sha256"] == text_sha256(note1["text"])
    assert not (out / ".inputs.tmp.jsonl").exists()  # the scratch file goes with the build


def test_a_jsonl_file_becomes_a_corpus(jsonl_file, tmp_path):
    with open(jsonl_file, "a") as f:
        f.write("{not json\n" + json.dumps({"body": ""}) + "\n" + json.dumps({"other": "x"}) + "\n")
    out = tmp_path / "corpus"
    stats, results = build_corpus(jsonl_file, out, text_field="body")
    assert stats["files"] == {"ok": 6, "skipped": 3, "duplicate": 0, "near_duplicate": 0}
    assert [r.reason for r in results if r.status == "skipped"] == [
        "not valid JSON",
        "the text field is empty",
        "no field 'body'",
    ]
    assert {r.kind for r in results} == {"jsonl"} and results[0].source == f"{jsonl_file}:1"
    documents = _documents(out)
    assert sorted(d["title"] for d in documents.values()) == [f"Record {i}" for i in range(6)]
    assert sorted(d["text"] for d in documents.values()) == sorted(_texts())


def test_text_that_is_not_prose_is_skipped_with_a_reason(text_dir, tmp_path):
    (text_dir / "nul.txt").write_bytes(b"\x00" * 4096)
    (text_dir / "binary.md").write_bytes(bytes(range(1, 32)) * 40 + b"a few words")  # valid UTF-8, not prose
    (text_dir / "tabs.txt").write_text("Sea ice\tretreats\fin summer.\n" + _texts()[0])  # tabs and form feeds: prose
    out = tmp_path / "corpus"
    _, results = build_corpus(text_dir, out)
    reasons = {r.source.rsplit("/", 1)[-1]: (r.status, r.reason) for r in results}
    for name in ("nul.txt", "binary.md"):
        status, reason = reasons[name]
        assert status == "skipped" and reason.startswith("not prose:") and "control characters" in reason, name
    assert reasons["tabs.txt"][0] == "ok"  # control
    assert not any("\x00" in d["text"] for d in _documents(out).values())


def test_a_bom_jsonl_keeps_its_first_record_and_bad_utf8_lines_are_skipped(jsonl_file, tmp_path):
    lines = jsonl_file.read_bytes().splitlines(keepends=True)
    jsonl_file.write_bytes(b"\xef\xbb\xbf" + lines[0] + b'{"body": "caf\xe9 au lait"}\n' + b"".join(lines[1:]))
    _, results = build_corpus(jsonl_file, tmp_path / "corpus", text_field="body")
    assert [r.status for r in results] == ["ok", "skipped", "ok", "ok", "ok", "ok", "ok"]
    assert results[0].title == "Record 0"  # the BOM did not cost the first record
    assert results[1].reason.startswith("not UTF-8 (byte ") and results[1].source == f"{jsonl_file}:2"


def test_a_jsonl_without_the_text_field_names_the_fields(jsonl_file, tmp_path):
    with pytest.raises(SourceError, match=r"line 1 has no field 'text' \(it has body, title\); pass --text-field"):
        build_corpus(jsonl_file, tmp_path / "corpus")


def test_a_folder_of_pdfs_and_texts_gives_both_kinds(text_dir, tmp_path):
    write_pdf(text_dir / "report.pdf", prose_pages(2, header="Report"))
    _, results = build_corpus(text_dir, tmp_path / "corpus", workers=1)
    kinds = {r.source.rsplit("/", 1)[-1]: r.kind for r in results}
    assert kinds.pop("report.pdf") == "pdf" and set(kinds.values()) == {"text"}


@pytest.mark.parametrize("layout", ["save_to_disk", "dataset_dict", "data_files"])
def test_a_local_dataset_folder_reads_offline(tmp_path, layout):
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_dict({"content": _texts(), "n": list(range(6))})
    folder = tmp_path / "dataset"
    if layout == "save_to_disk":
        rows.save_to_disk(str(folder))
    elif layout == "dataset_dict":
        DatasetDict({"train": rows, "test": rows.select([0])}).save_to_disk(str(folder))
    else:
        folder.mkdir()
        rows.to_json(folder / "part-0.jsonl")
    out = tmp_path / "corpus"
    _, results = build_corpus(HubDataset(str(folder)), out, text_field="content")
    assert [r.status for r in results] == ["ok"] * 6 and {r.kind for r in results} == {"dataset"}
    assert results[0].source == f"{folder}[train]:0"
    assert sorted(d["text"] for d in _documents(out).values()) == sorted(_texts())


def test_dataset_errors_are_one_line(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"content": ["x"]}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(SourceError, match=r"no column 'text' \(it has content\); pass --dataset_text_field"):
        build_corpus(HubDataset(str(tmp_path / "saved")), tmp_path / "corpus")
    with pytest.raises(SourceError, match="--dataset_name someone/not-cached: Couldn't reach"):  # HF_HUB_OFFLINE
        build_corpus(HubDataset("someone/not-cached"), tmp_path / "corpus")
    with pytest.raises(CorpusError, match="not a folder or a .jsonl file"):
        build_corpus(tmp_path / "saved" / "state.json", tmp_path / "corpus")


def test_extract_command_takes_every_kind_of_source(jsonl_file, tmp_path, capsys):
    cli.main(["extract", str(jsonl_file), "--output", str(tmp_path / "a"), "--text-field", "body"])
    assert "6 input(s): 6 documents" in capsys.readouterr().out
    rows = tmp_path / "rows"
    rows.mkdir()
    shutil.copy(jsonl_file, rows / "part.jsonl")
    cli.main(["extract", "--dataset_name", str(rows), "--dataset_text_field", "body", "--output", str(tmp_path / "b")])
    assert "6 input(s): 6 documents" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["extract", str(jsonl_file), "--dataset_name", str(rows), "--output", str(tmp_path / "c")])
    assert exit_info.value.code == 2 and "not both" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # evaluate copies metric modules there


@pytest.mark.parametrize("kind", ["text folder", "jsonl"])
def test_text_inputs_train_and_evaluate_through_the_same_recipe(kind, text_dir, jsonl_file, tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    if kind == "jsonl":
        build_corpus(jsonl_file, corpus, ratios=(0.6, 0.2, 0.2), text_field="body")
    else:
        build_corpus(text_dir, corpus, ratios=(0.6, 0.2, 0.2))
    stats = train.run(str(recipe_maker(tmp_path, tiny_model_dir, corpus)(max_steps=2)), [])
    assert stats["steps"] == 2 and stats["tokens_seen"] > 0
    results = evaluation.evaluate_run(tmp_path / "run")
    test_ids = set(load_corpus(corpus)["test"]["id"])
    assert {d["id"] for d in results["per_document"]} == test_ids and results["fine_tuned"]["perplexity"] > 1
