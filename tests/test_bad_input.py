"""Bad input as a hostile but realistic user gives it: one row per case, each a one-line error with exit status 2
that names the file or key and what to do, and leaves every earlier output as it was.

Each row: the command line ({tmp}, {corpus}, {run} and {recipe} filled in), what to prepare first, the fragment the
error line must hold, and the files that must not change. The silent wrong results of the same issue (eval on
training documents, a mixed corpus folder, totals after a resume) have their own tests below and in
test_corpus.py / test_train.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import prose_pages, recipe_maker, write_pdf

from climate_sft import cli
from climate_sft.corpus import build_corpus, current_build, load_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A finished tiny run, with the PDFs and the corpus it was trained from."""
    from climate_sft import train

    root = tmp_path_factory.mktemp("trained")
    pdfs = root / "pdfs"
    pdfs.mkdir()
    for i in range(6):
        write_pdf(pdfs / f"doc{i}.pdf", [[f"Report {i}: heat, ice and water"], *prose_pages(1 + i % 3, f"S{i}")])
    corpus = root / "corpus"
    build_corpus(pdfs, corpus, ratios=(0.6, 0.2, 0.2), workers=1)
    recipe = recipe_maker(root, tiny_model_dir, corpus)(max_steps=2)
    train.run(str(recipe), [])
    return {"root": root, "pdfs": pdfs, "corpus": corpus, "run": root / "run", "recipe": recipe}


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for path in paths:
        for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


# (case, argv, prepare(trained, tmp) -> dict of extra format fields, expected fragment, protected)
CASES = [
    (
        "extract into a file",
        ["extract", "{pdfs}", "--output", "{tmp}/notes.txt"],
        lambda t, tmp: (tmp / "notes.txt").write_text("x") and {},
        "is a file; give a folder",
        ["{tmp}/notes.txt"],
    ),
    (
        "extract under a file",
        ["extract", "{pdfs}", "--output", "{tmp}/notes.txt/corpus"],
        lambda t, tmp: (tmp / "notes.txt").write_text("x") and {},
        "cannot write there",
        ["{tmp}/notes.txt"],
    ),
    (
        "extract --split abc",
        ["extract", "{pdfs}", "--output", "{corpus}", "--split", "abc"],
        None,
        "--split abc: give three",
        ["{corpus}"],
    ),
    (
        "extract --workers 0",
        ["extract", "{pdfs}", "--output", "{corpus}", "--workers", "0"],
        None,
        "argument --workers: must be at least 1, got 0",
        ["{corpus}"],
    ),
    (
        "extract --workers -2",
        ["extract", "{pdfs}", "--output", "{corpus}", "--workers", "-2"],
        None,
        "argument --workers: must be at least 1, got -2",
        ["{corpus}"],
    ),
    (
        "train num_train_epochs -1",
        ["train", "--config", "{recipe}", "--max_steps", "-1", "--num_train_epochs", "-1"],
        None,
        "key 'num_train_epochs': must be positive",
        ["{run}"],
    ),
    (
        "train save_steps -3",
        ["train", "--config", "{recipe}", "--save_strategy", "steps", "--save_steps", "-3"],
        None,
        "key 'save_steps': must be positive",
        ["{run}"],
    ),
    (
        "train lora_r 0",
        ["train", "--config", "{recipe}", "--lora_r", "0", "--dry-run"],
        None,
        "key 'lora_r': must be at least 1",
        ["{run}"],
    ),
    (
        "train lora_r -4",
        ["train", "--config", "{recipe}", "--lora_r", "-4", "--dry-run"],
        None,
        "key 'lora_r': must be at least 1",
        ["{run}"],
    ),
    (
        "train learning_rate -1",
        ["train", "--config", "{recipe}", "--learning_rate", "-1", "--dry-run"],
        None,
        "key 'learning_rate': must be positive",
        ["{run}"],
    ),
    (
        "train lora_dropout 1.5",
        ["train", "--config", "{recipe}", "--lora_dropout", "1.5", "--dry-run"],
        None,
        "key 'lora_dropout': must be in [0, 1)",
        ["{run}"],
    ),
    (
        "train target module the model lacks",
        ["train", "--config", "{recipe}", "--lora_target_modules", "no_such_module", "--dry-run"],
        None,
        "the model has no linear module 'no_such_module'",
        ["{run}"],
    ),
    (
        "train batch size 0",
        ["train", "--config", "{recipe}", "--per_device_train_batch_size", "0", "--dry-run"],
        None,
        "key 'per_device_train_batch_size': must be at least 1",
        ["{run}"],
    ),
    (
        "train max_length 0",
        ["train", "--config", "{recipe}", "--max_length", "0", "--dry-run"],
        None,
        "key 'max_length': must be at least 2",
        ["{run}"],
    ),
    (
        "train max_length -8",
        ["train", "--config", "{recipe}", "--max_length", "-8", "--dry-run"],
        None,
        "key 'max_length': must be at least 2",
        ["{run}"],
    ),
    (
        "train eval_split missing",
        ["train", "--config", "{recipe}", "--eval_split", "dev", "--dry-run"],
        None,
        "no split 'dev'",
        ["{run}"],
    ),
    (
        "train test_split missing",
        ["train", "--config", "{recipe}", "--test_split", "holdout", "--dry-run"],
        None,
        "no split 'holdout'",
        ["{run}"],
    ),
    (
        "train corpus without dataset",
        ["train", "--config", "{recipe}", "--corpus_dir", "{tmp}/broken", "--dry-run"],
        lambda t, tmp: _broken_corpus(t, tmp, "dataset"),
        "the corpus is damaged",
        ["{run}"],
    ),
    (
        "train corpus with corrupt index",
        ["train", "--config", "{recipe}", "--corpus_dir", "{tmp}/broken", "--dry-run"],
        lambda t, tmp: _broken_corpus(t, tmp, "index"),
        "the corpus is damaged",
        ["{run}"],
    ),
    (
        "train corpus folder empty",
        ["train", "--config", "{recipe}", "--corpus_dir", "{tmp}", "--dry-run"],
        None,
        "holds no corpus",
        ["{run}"],
    ),
    ("train --config a folder", ["train", "--config", "{tmp}"], None, "is a folder", ["{run}"]),
    (
        "train malformed list",
        ["train", "--config", "{recipe}", "--lora_target_modules", "[q_proj", "--dry-run"],
        None,
        "is not a module name",
        ["{run}"],
    ),
    (
        "train unknown hub id offline",
        ["train", "--config", "{recipe}", "--model_name_or_path", "acme/no-such-model", "--dry-run"],
        None,
        "not in the local hub cache and HF_HUB_OFFLINE=1",
        ["{run}"],
    ),
    (
        "train missing gguf",
        ["train", "--config", "{recipe}", "--model_name_or_path", "/models/nowhere.gguf", "--dry-run"],
        None,
        "GGUF file /models/nowhere.gguf not found; give an existing",
        ["{run}"],
    ),
    (
        "train empty recipe",
        ["train", "--config", "{tmp}/empty.yaml"],
        lambda t, tmp: (tmp / "empty.yaml").write_text("") and {},
        "the recipe is empty",
        ["{run}"],
    ),
    (
        "train comments-only recipe",
        ["train", "--config", "{tmp}/empty.yaml"],
        lambda t, tmp: (tmp / "empty.yaml").write_text("# nothing yet\n") and {},
        "the recipe is empty",
        ["{run}"],
    ),
    (
        "train key written twice",
        ["train", "--config", "{tmp}/twice.yaml", "--dry-run"],
        lambda t, tmp: (tmp / "twice.yaml").write_text(t["recipe"].read_text() + "lora_r: 4\n") and {},
        "'lora_r' is written twice",
        ["{run}"],
    ),
    ("train --config a folder", ["train", "--config", "{tmp}"], None, "is a folder", ["{run}"]),
    ("eval a folder that is no run", ["eval", "{tmp}"], None, "no finished training run here", ["{run}"]),
    (
        "eval when the corpus lost the test documents",
        ["eval", "{run}"],
        lambda t, tmp: _rebuild_without_test_documents(t),
        "no longer holds 2 of the run's 2 test document(s)",
        ["{run}"],
    ),
    (
        "eval --general-text a folder with no text",
        ["eval", "{run}", "--general-text", "{tmp}"],
        None,
        "no .txt or .md file with text in it",
        ["{run}"],
    ),
    ("report a folder that is no run", ["report", "{tmp}"], None, "no training_stats.json", ["{run}"]),
]


def _broken_corpus(trained, tmp, what: str) -> dict:
    broken = tmp / "broken"
    shutil.copytree(trained["corpus"], broken)
    build = current_build(broken)
    if what == "dataset":
        shutil.rmtree(build / "dataset")
    else:
        (build / "dataset" / "dataset_dict.json").write_text('{"splits": ["tr')
    return {}


def _rebuild_without_test_documents(trained) -> dict:
    """The run's corpus rebuilt from other PDFs: its held-out document is gone."""
    shutil.copytree(trained["corpus"], trained["root"] / "corpus.saved")
    pdfs = trained["root"] / "other_pdfs"
    pdfs.mkdir()
    for i in range(4):
        write_pdf(pdfs / f"o{i}.pdf", [[f"Another report {i} on rain"], *prose_pages(1, header=f"Other {i}")])
    build_corpus(pdfs, trained["corpus"], workers=1)
    return {}


@pytest.fixture
def restore_corpus(trained):
    yield
    saved = trained["root"] / "corpus.saved"
    if saved.exists():
        shutil.rmtree(trained["corpus"])
        saved.rename(trained["corpus"])
        shutil.rmtree(trained["root"] / "other_pdfs", ignore_errors=True)


@pytest.mark.parametrize("case, argv, prepare, expected, protected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_destroys_nothing(
    case, argv, prepare, expected, protected, trained, tmp_path, pdf_dir, capsys, restore_corpus
):
    fields = {
        "tmp": tmp_path,
        "pdfs": pdf_dir,
        "corpus": trained["corpus"],
        "run": trained["run"],
        "recipe": trained["recipe"],
    }
    if prepare:
        fields.update(prepare(trained, tmp_path) or {})
    protected_paths = [Path(p.format(**fields)) for p in protected]
    before = _digest(protected_paths)
    with pytest.raises(SystemExit) as exit_:
        cli.main([a.format(**fields) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert len(err.splitlines()) == 1 and expected in err, err
    assert err.startswith(f"climate-sft {argv[0]}: error: ")
    assert _digest(protected_paths) == before


def test_eval_scores_the_runs_own_test_documents_after_a_rebuild(trained, tmp_path, monkeypatch, restore_corpus):
    """Silent result 1: re-extracting the corpus with a few more PDFs moved a training document into the test split,
    and eval scored it. The run records its documents; eval scores exactly those, from any working directory."""
    from climate_sft.evaluation import evaluate_run

    record = json.loads((trained["run"] / "data.json").read_text())
    trained_ids = {d["id"] for d in record["splits"]["train"]}
    recorded_test = [d["id"] for d in record["splits"]["test"]]
    shutil.copytree(trained["corpus"], trained["root"] / "corpus.saved")
    pdfs = trained["root"] / "other_pdfs"
    shutil.copytree(trained["pdfs"], pdfs)
    for i in range(4):
        write_pdf(pdfs / f"new{i}.pdf", [[f"A new report {i} on storms"], *prose_pages(1, header=f"New {i}")])
    for seed in range(42, 62):  # the first split seed that puts a trained document into the test split
        build_corpus(pdfs, trained["corpus"], ratios=(0.6, 0.2, 0.2), seed=seed, workers=1)
        if set(load_corpus(trained["corpus"])["test"]["id"]) & trained_ids:
            break
    else:
        pytest.fail("control: no rebuilt test split held a document the run trained on")

    monkeypatch.chdir(tmp_path)  # a relative corpus_dir in the recipe must not matter
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    results = evaluate_run(trained["run"])
    assert [d["id"] for d in results["per_document"]] == recorded_test
    assert not {d["id"] for d in results["per_document"]} & trained_ids


def test_recipe_yaml_of_a_run_holds_absolute_paths(trained):
    import yaml

    recorded = yaml.safe_load((trained["run"] / "recipe.yaml").read_text())
    assert Path(recorded["corpus_dir"]).is_absolute() and Path(recorded["model_name_or_path"]).is_absolute()
    assert Path(recorded["output_dir"]) == trained["run"].resolve()


# --- kills, Ctrl-C and two writers, for real (slow: processes and timing) ---------------------------------------


def _extract_process(pdfs: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "climate_sft.cli", "extract", str(pdfs), "--output", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def many_pdfs(tmp_path) -> Path:
    pdfs = tmp_path / "many"
    pdfs.mkdir()
    for i in range(40):
        write_pdf(pdfs / f"r{i:02d}.pdf", [[f"Field report {i} on river floods"], *prose_pages(2, header=f"F{i}")])
    return pdfs


def _check_consistent(corpus_dir: Path) -> int:
    from test_corpus import assert_consistent

    return assert_consistent(corpus_dir)


@pytest.mark.slow
def test_a_build_killed_at_any_moment_leaves_one_whole_corpus(many_pdfs, tmp_path, pdf_dir):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)  # the corpus to protect: 3 documents
    counts = set()
    for delay in (0.5, 1.5, 2.5, 3.5, 4.5, 6.0):
        # every try extracts again, so the kill lands in a different stage
        shutil.rmtree(out / "cache", ignore_errors=True)
        process = _extract_process(many_pdfs, out)
        time.sleep(delay)
        process.kill()
        process.wait()
        counts.add(_check_consistent(out))  # the old corpus or the new one, each whole
    assert counts <= {3, 40}


@pytest.mark.slow
def test_two_writers_at_once_one_waits_out_with_one_line(many_pdfs, tmp_path):
    out = tmp_path / "corpus"
    for i in range(40, 400):  # enough PDFs that the first writer still holds the lock when the second has started
        write_pdf(many_pdfs / f"r{i:03d}.pdf", [[f"Field report {i} on river floods"], *prose_pages(2, header=f"F{i}")])
    first = subprocess.Popen(
        [sys.executable, "-m", "climate_sft.cli", "extract", str(many_pdfs), "--output", str(out), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (out / ".lock").exists() or not (out / ".lock").read_text():
        time.sleep(0.05)
    second = _extract_process(many_pdfs, out)
    _, err = second.communicate(timeout=120)
    first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 2
    assert err.strip().splitlines() == [err.strip()] and "is being written by `climate-sft extract` (pid" in err
    assert _check_consistent(out) == 400


@pytest.mark.slow
def test_ctrl_c_during_extract_is_one_line_and_keeps_the_corpus(many_pdfs, tmp_path, pdf_dir):
    out = tmp_path / "corpus"
    build_corpus(pdf_dir, out, workers=1)
    before = _digest([current_build(out)])
    for i in range(40, 400):  # enough PDFs that extraction is still running when Ctrl-C comes
        write_pdf(many_pdfs / f"r{i:03d}.pdf", [[f"Field report {i} on river floods"], *prose_pages(2, header=f"F{i}")])

    def cached_bytes() -> int:
        return sum(f.stat().st_size for f in (out / "cache").glob("*.jsonl"))

    already = cached_bytes()  # the first build's cache
    process = _extract_process(many_pdfs, out)
    while cached_bytes() == already and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # one Ctrl-C, once extraction has begun
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "interrupted after extracting" in err, err
    assert _digest([current_build(out)]) == before
