"""The training entry point on a tiny random model: outputs, token counts, dry run, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from climate_sft import train
from climate_sft.config import load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.packing import split_token_stats


def test_train_writes_every_output(tiny_recipe, tmp_path):
    stats = train.run(str(tiny_recipe(report_to="tensorboard", eval_strategy="steps", eval_steps=2)), [])
    run = tmp_path / "run"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "recipe.yaml", "train.log"):
        assert (run / name).is_file(), name
    assert list(run.rglob("events.out.tfevents.*")), "tensorboard logs"
    assert json.loads((run / "training_stats.json").read_text())["steps"] == 3
    assert stats["steps"] == 3 and len(stats["losses"]) == 3 and stats["eval_losses"]
    assert stats["effective_batch_size"] == 2 * 1 * 1 and stats["peak_rss_gb"] > 0
    assert stats["packing"]["train"]["tokens_dropped"] == 0  # bfd_split keeps every token
    log = (run / "train.log").read_text()
    assert '"loss"' in log and "done: 3 steps" in log


def test_one_epoch_counts_exactly_the_packed_tokens(tiny_recipe):
    """tokens_seen is the real tokens trained on: over one epoch, every token packing kept, counted once."""
    stats = train.run(str(tiny_recipe(max_steps=-1, num_train_epochs=1)), [])
    kept = stats["packing"]["train"]["tokens_kept"]
    assert stats["tokens_seen"] == kept == sum(stats["this_segment"]["step_tokens"])
    assert stats["steps"] == stats["packing"]["train"]["steps_per_epoch_per_device"]
    seconds = stats["train_seconds"]  # rounded to 0.01 s, a few percent of a tiny run
    assert kept / (seconds + 0.005) - 0.1 <= stats["tokens_per_second"] <= kept / (seconds - 0.005) + 0.1


def test_effective_batch_size_sets_accumulation(tiny_recipe, tmp_path):
    stats = train.run(str(tiny_recipe(effective_batch_size=8, max_steps=1)), [])
    assert (stats["per_device_train_batch_size"], stats["gradient_accumulation_steps"]) == (2, 4)
    assert stats["effective_batch_size"] == 8
    again = load_recipe(tmp_path / "run" / "recipe.yaml")  # a run's recipe.yaml is a recipe
    assert again.training.effective_batch_size == 8 and again.training.per_device_train_batch_size == 2


def test_dry_run_loads_no_weights(tiny_recipe, monkeypatch, capsys):
    monkeypatch.setattr("climate_sft.trainer.load_model", lambda *a: pytest.fail("dry run loaded the model"))
    train.main(["--config", str(tiny_recipe()), "--dry-run", "--max_length", "32"])
    out = capsys.readouterr().out
    assert "max_length: 32" in out and "tokens_kept" in out and "packed_sequences" in out
    assert "dry run: recipe valid" in out
    sizes = next(line for line in out.splitlines() if line.startswith("# splits (whole documents): "))
    corpus = load_corpus(load_recipe(tiny_recipe()).data.corpus_dir)
    for split in ("train", "validation", "test"):
        assert f"{split} {len(corpus[split])} documents, " in sizes


def test_bfd_would_drop_tokens_that_bfd_split_keeps(tiny_recipe, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    recipe = load_recipe(tiny_recipe(max_length=32))
    corpus = load_corpus(recipe.data.corpus_dir)
    kept = split_token_stats(corpus, ["train"], tokenizer, recipe.training)["train"]
    recipe.training.packing_strategy = "bfd"
    dropped = split_token_stats(corpus, ["train"], tokenizer, recipe.training)["train"]
    assert kept["tokens_dropped"] == 0 and kept["tokens_kept"] == kept["tokens"]
    assert dropped["tokens_dropped"] > 0 and dropped["tokens_kept"] + dropped["tokens_dropped"] == kept["tokens"]


def _train_process(recipe, output_dir):
    command = [sys.executable, "-m", "climate_sft.train", "--config", str(recipe), "--output_dir", str(output_dir)]
    return command, {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_a_killed_run_resumes_to_the_same_losses_and_adapter(tiny_recipe, tmp_path):
    """SIGKILL after a checkpoint, rerun the same command: the run ends as if never interrupted."""
    recipe = tiny_recipe(
        max_steps=16, save_strategy="steps", save_steps=4, max_length=128, gradient_checkpointing=False
    )
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    command, env = _train_process(recipe, whole)
    subprocess.run(command, env=env, check=True, capture_output=True)

    command, env = _train_process(recipe, resumed)
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(resumed.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    checkpoints = sorted(int(p.parent.name.split("-")[1]) for p in resumed.glob("checkpoint-*/trainer_state.json"))
    assert checkpoints and checkpoints[-1] < 16 and not (resumed / "training_stats.json").exists(), "killed mid-run"
    subprocess.run(command, env=env, check=True, capture_output=True)

    assert f"resuming from {resumed}/checkpoint-" in (resumed / "train.log").read_text()
    a, b = (json.loads((run / "training_stats.json").read_text()) for run in (whole, resumed))
    assert [x["loss"] for x in b["losses"]] == pytest.approx([x["loss"] for x in a["losses"]], abs=1e-5)
    assert len(b["losses"]) == 16
    weights_a, weights_b = (load_file(run / "adapter_model.safetensors") for run in (whole, resumed))
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_b[name], weights_a[name], rtol=1e-5, atol=1e-6)
    # totals cover both segments; the resumed segment is shown on its own
    assert b["tokens_seen"] == a["tokens_seen"] and b["segments"] == 2 and a["segments"] == 1
    resumed_from = b["steps"] - b["this_segment"]["steps"]
    assert resumed_from in checkpoints and b["this_segment"]["tokens"] < b["tokens_seen"]
    assert b["train_seconds"] > b["this_segment"]["seconds"]


def test_resuming_a_checkpoint_saved_at_max_steps_trains_no_extra_step(tiny_recipe, tmp_path):
    """transformers would train step max_steps + 1 here (12 steps per epoch, max_steps 4, constant learning rate):
    a rerun of a finished run, or of one killed between its last checkpoint and the final save, must not."""
    recipe = str(tiny_recipe(max_steps=4, save_strategy="steps", save_steps=4, lr_scheduler_type="constant"))
    run = tmp_path / "run"
    finished = train.run(recipe, [])
    assert finished["packing"]["train"]["steps_per_epoch_per_device"] > 4  # mid-epoch: where the extra step came
    stats_text, adapter = (run / "training_stats.json").read_text(), load_file(run / "adapter_model.safetensors")

    again = train.run(recipe, [])  # the same command once more
    assert again["steps"] == 4 and again["this_segment"]["steps"] == 0
    assert (run / "training_stats.json").read_text() == stats_text

    (run / "training_stats.json").unlink()  # as if killed after checkpoint-4, before the final save
    (run / "adapter_model.safetensors").unlink()
    train.run(recipe, [])
    stats = json.loads((run / "training_stats.json").read_text())
    assert [x["step"] for x in stats["losses"]] == [1, 2, 3, 4] and stats["tokens_seen"] == finished["tokens_seen"]
    for name, weight in load_file(run / "adapter_model.safetensors").items():
        torch.testing.assert_close(weight, adapter[name], rtol=0, atol=0)
