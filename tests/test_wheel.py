"""What `pip install climate-sft` gives a user: the package, its data, the recipes and accelerate configs, and
nothing of the development tools; and a working `extract` + `train --config <shipped name> --dry-run` from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("climate_sft-*.whl"))


def test_the_wheel_holds_the_package_and_its_data_not_the_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "climate_sft/trainer.py",
        "climate_sft/metrics/perplexity/perplexity.py",
        "climate_sft/sample_corpus/pdfs/01_greenhouse_effect.pdf",
        "climate_sft/sample_corpus/source/01_greenhouse_effect.txt",
        "climate_sft/sample_corpus/general/01_sourdough_bread.txt",
        "climate_sft/recipes/qlora_h100.yaml",
        "climate_sft/recipes/smollm2_cpu.yaml",
        "climate_sft/accelerate_configs/multi_gpu.yaml",
    ):
        assert expected in names, expected
    shipped = {p.name for p in (ROOT / "recipes").glob("*.yaml")}
    assert {Path(n).name for n in names if n.startswith("climate_sft/recipes/")} == shipped
    assert not [n for n in names if n.startswith(("benchmarks/", "tests/", "scripts/")) or "/benchmarks/" in n]


def test_an_installed_wheel_extracts_and_dry_runs_a_shipped_recipe(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    work = tmp_path / "elsewhere"  # no checkout here: recipes must come from the installed package
    work.mkdir()

    def climate_sft(*args):
        return subprocess.run(
            [sys.executable, "-m", "climate_sft.cli", *args], cwd=work, env=env, capture_output=True, text=True
        )

    listed = climate_sft("ls")
    assert listed.returncode == 0 and "recipes/qlora_h100.yaml" in listed.stdout, listed.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import climate_sft; print(climate_sft.__file__)"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(site)), where
    extracted = climate_sft("extract", "--workers", "1")  # the bundled sample corpus, into ./data/corpus
    assert extracted.returncode == 0, extracted.stderr
    dry = climate_sft("train", "--config", "smollm2_cpu", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: recipe valid" in dry.stdout
