"""The guarantees a training run keeps by construction (README "Bad input"): a run folder belongs to one corpus and
one recipe, a diverging run fails loudly, a failing child is one line, a killed command takes its children with
it, and a token is never written. Each with a control that shows the check would catch the fault."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import prose_pages, write_pdf

from climate_sft import train
from climate_sft.config import RecipeError, load_recipe
from climate_sft.corpus import build_corpus
from climate_sft.trainer import NonFiniteTraining

TOKEN = "hf_PlantedSecretToken0123456789abcdef"


def test_a_run_folder_refuses_another_corpus_and_another_model_shape(tiny_recipe, tmp_path, tiny_corpus_dir):
    recipe = tiny_recipe(max_steps=2)
    train.run(str(recipe), [])
    run = tmp_path / "run"
    record = (run / "data.json").read_bytes()
    # control: the same command again is a resume of the same run, and is accepted
    assert train.run(str(recipe), [])["steps"] == 2
    other_pdfs = tmp_path / "other_pdfs"
    other_pdfs.mkdir()
    for i in range(4):
        write_pdf(other_pdfs / f"other{i}.pdf", [[f"Other report {i} on sea ice"], *prose_pages(1, f"O{i}")])
    other = tmp_path / "other_corpus"
    build_corpus(other_pdfs, other, ratios=(0.5, 0.25, 0.25), workers=1)
    with pytest.raises(RecipeError, match="trained on other documents.*--fresh"):
        train.run(str(recipe), ["--corpus_dir", str(other)])
    with pytest.raises(RecipeError, match="lora_r: 4, this recipe gives 8"):
        train.run(str(recipe), ["--lora_r", "8"])
    assert (run / "data.json").read_bytes() == record  # nothing rewritten by the refused runs
    stats = train.run(str(recipe), ["--corpus_dir", str(other), "--max_steps", "1"], fresh=True)
    assert stats["steps"] == 1
    assert json.loads((run / "data.json").read_text())["corpus_dir"] == str(other.resolve())


def test_a_resume_that_lowers_max_steps_is_refused_before_anything_is_written(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=4, save_strategy="steps", save_steps=2)
    train.run(str(recipe), [])
    run = tmp_path / "run"
    files = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "train.log"}  # noqa: E731
    before = files()  # (train.log gains the refused run's lines: a log, not a result)
    with pytest.raises(RecipeError, match="key 'max_steps': 1 is below the 4 steps"):
        train.run(str(recipe), ["--max_steps", "1"])
    assert files() == before


def test_a_resume_from_a_damaged_checkpoint_leaves_the_run_record_as_it_was(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=2, save_strategy="steps", save_steps=2)
    train.run(str(recipe), [])
    run = tmp_path / "run"
    recipe_yaml, data_json = (run / "recipe.yaml").read_bytes(), (run / "data.json").read_bytes()
    adapter = run / "checkpoint-2" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])
    with pytest.raises(Exception):  # noqa: B017 -- whichever library error; the boundary makes it one line
        train.run(str(recipe), ["--max_steps", "4", "--logging_steps", "2"])
    assert (run / "recipe.yaml").read_bytes() == recipe_yaml and (run / "data.json").read_bytes() == data_json


def test_a_diverging_run_stops_with_one_line_and_saves_no_result(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=4, learning_rate=1e30)
    with pytest.raises(NonFiniteTraining, match="training diverged: .* at step"):
        train.run(str(recipe), [])
    run = tmp_path / "run"
    assert not (run / "training_stats.json").exists() and not (run / "adapter_model.safetensors").exists()
    # control: the same recipe at an ordinary learning rate finishes
    assert train.run(str(recipe), ["--learning_rate", "1e-3", "--output_dir", str(tmp_path / "ok")])["steps"] == 4


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "climate_sft.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_a_failing_launched_child_is_its_own_line_and_status(tiny_recipe, tmp_path):
    (tmp_path / "run").write_text("a file where the run folder goes")
    done = _cli("train", "--config", str(tiny_recipe()))
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "CalledProcessError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("climate-sft train: error: "), errors
    assert (tmp_path / "run").read_text() == "a file where the run folder goes"


def test_a_token_is_never_written_nor_printed(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=2, save_strategy="steps", save_steps=1)
    done = _cli("train", "--config", str(recipe), "--hub_token", TOKEN)
    assert done.returncode == 0, done.stderr[-2000:]
    dry = _cli("train", "--config", str(recipe), "--hub_token", TOKEN, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    leaks = [name for name, text in (("train", done.stdout + done.stderr), ("dry run", dry.stdout + dry.stderr))]
    leaks = [name for name in leaks if TOKEN in (done.stdout + done.stderr if name == "train" else dry.stdout)]
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any(p.name == "recipe.yaml" for p in files)
    leaks += [str(p) for p in files if TOKEN.encode() in p.read_bytes()]
    assert not leaks, leaks
    # control: the scan finds the token where it is written
    planted = tmp_path / "run" / "planted.txt"
    planted.write_text(TOKEN)
    assert TOKEN.encode() in planted.read_bytes()
    # the token still reaches the libraries: in the environment, where huggingface_hub reads it
    values = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert "hub_token" not in values


def test_a_token_in_a_recipe_moves_to_the_environment(tiny_recipe, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    recipe = load_recipe(tiny_recipe(hub_token=TOKEN))
    assert recipe.training.hub_token is None and os.environ["HF_TOKEN"] == TOKEN


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.split()
    pairs = list(zip(map(int, out[::2]), map(int, out[1::2])))
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in pairs:
            if ppid == parent:
                found.append(child)
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


@pytest.mark.slow
def test_kill_9_of_the_command_takes_the_launcher_and_the_trainer_with_it(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=100000, save_strategy="no")
    parent = subprocess.Popen(
        [sys.executable, "-m", "climate_sft.cli", "train", "--config", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = tmp_path / "run" / "train.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "step 2:" in log.read_text()):
        time.sleep(0.5)
    children = _children_of(parent.pid)
    assert len(children) >= 2, "the launcher and the trainer run under the command"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(map(_alive, children)):
        time.sleep(0.5)
    survivors = [pid for pid in children if _alive(pid)]
    for pid in survivors:  # leave nothing running whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert not survivors
