"""The `climate-sft` command as a user meets it: output, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest


def climate_sft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "climate_sft.cli", *args], capture_output=True, text=True)


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
        (("eval", "{tmp}"), "no finished training run here"),
        (("report", "{tmp}"), "no training_stats.json"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(args, expected, tmp_path):
    done = climate_sft(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_extract_flags_reach_the_corpus(pdf_dir, tmp_path):
    done = climate_sft("extract", str(pdf_dir), "--output", str(tmp_path / "c"), "--workers", "1",
                       "--keep-back-matter", "--languages", "fr,de")
    assert done.returncode == 2 and "no usable document among 3" in done.stderr  # all three are English
    done = climate_sft("extract", str(pdf_dir), "--output", str(tmp_path / "c"), "--workers", "1", "--languages", "en")
    assert done.returncode == 0 and "3 documents" in done.stdout and "back matter dropped: 0 characters" in done.stdout
