"""The `climate-sft` command as a user meets it: output, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from climate_sft import cli


def climate_sft(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, in a new process (for the tests that need one)."""
    return subprocess.run([sys.executable, "-m", "climate_sft.cli", *args], capture_output=True, text=True)


@pytest.fixture
def run_cli(capsys):
    """The command in this process (imports paid once): returns (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_extract_prints_the_summary(pdf_dir, tmp_path):
    (pdf_dir / "broken.pdf").write_bytes(b"%PDF-1.7 and then nothing")
    done = climate_sft("extract", str(pdf_dir), "--output", str(tmp_path / "corpus"), "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "4 PDF(s): 3 documents, 1 skipped" in done.stdout and "broken.pdf: not a readable PDF" in done.stdout
    assert "manifest.jsonl" in done.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("extract", "/no/such/folder", "--output", "{tmp}/c"), "/no/such/folder: no such folder"),
        (("extract", "--split", "0.9,0.1", "--output", "{tmp}/c"), "--split 0.9,0.1: give three"),
        (("train", "--config", "{tmp}/missing.yaml"), "missing.yaml: no such recipe file"),
        (("train", "--config", "{tmp}"), "is a folder"),
        (("extract", "--workers", "0", "--output", "{tmp}/c"), "argument --workers: must be at least 1, got 0"),
        (("extract", "--split", "abc", "--output", "{tmp}/c"), "--split abc: give three"),
        (("extract", "--shard", "2/2", "--output", "{tmp}/c"), "--shard 2/2: give I/N with 0 <= I < N"),
        (("extract", "--shard", "one", "--output", "{tmp}/c"), "--shard one: give I/N"),
        (("extract", "--stratify", "colour", "--output", "{tmp}/c"), "--stratify colour: give one of folder, kind"),
        (("eval", "{tmp}"), "no finished training run here"),
        (("report", "{tmp}"), "no training_stats.json"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(args, expected, tmp_path, run_cli):
    code, _, err = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1, err


def test_ls_lists_recipes_and_accelerate_configs_with_their_first_comment(run_cli):
    code, out, _ = run_cli("ls")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("recipes/smollm2_cpu.yaml") and "Embedded default" in line for line in lines)
    assert any(line.startswith("accelerate_configs/multi_gpu.yaml") for line in lines)


def test_cp_copies_a_shipped_recipe_and_refuses_to_overwrite(tmp_path, run_cli):
    assert run_cli("cp", "qlora_h100", str(tmp_path))[0] == 0
    assert (tmp_path / "qlora_h100.yaml").read_text().startswith("# Seed recipe")
    code, _, err = run_cli("cp", "qlora_h100", str(tmp_path))
    assert code == 2 and "already exists" in err
    code, _, err = run_cli("cp", "no_such_recipe")
    assert code == 2 and "climate-sft ls" in err


def test_help_keys_lists_the_recipe_keys(run_cli):
    code, out, _ = run_cli("train", "--help-keys")
    assert code == 0 and "learning_rate:" in out and "corpus_dir:" in out


def test_every_recipe_problem_on_its_own_line(tiny_recipe, run_cli):
    code, _, err = run_cli("train", "--config", str(tiny_recipe(lora_r=0, learning_rate=-1.0)), "--dry-run")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert all(line.startswith("climate-sft train: error: ") for line in lines)


def test_extract_shards_then_builds(pdf_dir, tmp_path, run_cli):
    out = str(tmp_path / "c")
    code, stdout, _ = run_cli("extract", str(pdf_dir), "--output", out, "--workers", "1", "--shard", "1/2")
    assert code == 0 and stdout.startswith("shard 1/2: ") and "without --shard to build the corpus" in stdout
    code, stdout, _ = run_cli("extract", str(pdf_dir), "--output", out, "--workers", "1")
    assert code == 0 and "3 documents" in stdout


def test_extract_flags_reach_the_corpus(pdf_dir, tmp_path, run_cli):
    out = str(tmp_path / "c")
    code, _, err = run_cli(
        "extract", str(pdf_dir), "--output", out, "--workers", "1", "--keep-back-matter", "--languages", "fr,de"
    )
    assert code == 2 and "no usable document among 3" in err  # all three are English
    code, stdout, _ = run_cli("extract", str(pdf_dir), "--output", out, "--workers", "1", "--languages", "en")
    assert code == 0 and "3 documents" in stdout and "back matter dropped: 0 characters" in stdout
