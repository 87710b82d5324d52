"""Training through the real entry point on a tiny random model: outputs, dry run, precision, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from climate_sft import train
from climate_sft.config import load_recipe


def test_train_writes_every_output(tiny_recipe, tmp_path):
    recipe = tiny_recipe(report_to="tensorboard", eval_strategy="steps", eval_steps=2)
    stats = train.run(str(recipe), [])
    run = tmp_path / "run"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "recipe.yaml", "train.log"):
        assert (run / name).is_file(), name
    assert list(run.rglob("events.out.tfevents.*")), "tensorboard logs"
    on_disk = json.loads((run / "training_stats.json").read_text())
    assert on_disk == json.loads(json.dumps(stats))
    assert stats["steps"] == 3 and len(stats["losses"]) == 3 and stats["eval_losses"]
    assert stats["effective_batch_size"] == 2 * 1 * 1
    assert stats["tokens_seen"] > 0 and stats["tokens_per_second"] > 0 and stats["peak_rss_gb"] > 0
    assert stats["packing"]["train"]["tokens_dropped"] == 0  # bfd_split keeps every token
    log = (run / "train.log").read_text()
    assert '"loss"' in log and "done: 3 steps" in log


def test_effective_batch_size_sets_accumulation(tiny_recipe, tmp_path):
    stats = train.run(str(tiny_recipe(effective_batch_size=8, max_steps=1)), [])
    assert (stats["per_device_train_batch_size"], stats["gradient_accumulation_steps"]) == (2, 4)
    assert stats["effective_batch_size"] == 8
    again = load_recipe(tmp_path / "run" / "recipe.yaml")  # a run's recipe.yaml is a recipe
    assert again.corpus.effective_batch_size == 8 and again.training.per_device_train_batch_size == 2


def test_dry_run_loads_no_weights(tiny_recipe, monkeypatch, capsys):
    monkeypatch.setattr("climate_sft.modeling.load_model", lambda *a: pytest.fail("dry run loaded the model"))
    train.main(["--config", str(tiny_recipe()), "--dry-run", "--max_length", "32"])
    out = capsys.readouterr().out
    assert "max_length: 32" in out and "tokens_kept" in out and "packed_sequences" in out
    assert "dry run: recipe valid" in out


def test_bfd_would_drop_tokens_that_bfd_split_keeps(tiny_recipe, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from climate_sft.corpus import load_corpus

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    recipe = load_recipe(tiny_recipe(max_length=32))
    corpus = load_corpus(recipe.corpus.corpus_dir)
    kept = train.token_stats(recipe, corpus, tokenizer)["train"]
    recipe.training.packing_strategy = "bfd"
    dropped = train.token_stats(recipe, corpus, tokenizer)["train"]
    assert kept["tokens_dropped"] == 0 and kept["tokens_kept"] == kept["tokens"]
    assert dropped["tokens_dropped"] > 0 and dropped["tokens_kept"] + dropped["tokens_dropped"] == kept["tokens"]


def test_trainable_parameters_stay_fp32_with_a_4bit_model(tiny_recipe):
    """TRL casts QLoRA adapters to bf16, which breaks fp16's grad scaler; the trainer must undo it."""
    pytest.importorskip("bitsandbytes")
    from climate_sft.corpus import load_corpus
    from climate_sft.modeling import load_tokenizer

    recipe = load_recipe(tiny_recipe(load_in_4bit=True, use_bnb_nested_quant=True, dtype="float32"))
    tokenizer = load_tokenizer(recipe.model)
    trainer = train.build_trainer(recipe, load_corpus(recipe.corpus.corpus_dir), tokenizer)
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    trainer.train()  # and the steps run


def test_out_of_memory_message_names_the_batch_and_the_fix(tiny_recipe):
    recipe = load_recipe(tiny_recipe(per_device_train_batch_size=16, gradient_accumulation_steps=2))
    message = train.out_of_memory_message(recipe)
    assert "per_device_train_batch_size=16" in message and "--per_device_train_batch_size 8" in message
    assert "--gradient_accumulation_steps 4" in message and "\n" not in message


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_recipe, tmp_path):
    recipe = tiny_recipe(max_steps=40, save_strategy="steps", save_steps=2, max_length=128, gradient_checkpointing=False)
    command = [sys.executable, "-m", "climate_sft.train", "--config", str(recipe)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = tmp_path / "run"
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(run.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    checkpoints = sorted(int(p.parent.name.split("-")[1]) for p in run.glob("checkpoint-*/trainer_state.json"))
    assert checkpoints and not (run / "training_stats.json").exists(), "killed before the end"
    subprocess.run(command, env=env, check=True, capture_output=True)
    log = (run / "train.log").read_text()
    assert f"resuming from {run}/checkpoint-" in log
    stats = json.loads((run / "training_stats.json").read_text())
    assert stats["steps"] == 40 and stats["steps_this_run"] <= 40 - checkpoints[0]


def test_a_checkpoint_cut_off_mid_save_is_not_resumed_from(tmp_path):
    for step, complete in ((2, True), (10, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert train.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert train.last_complete_checkpoint(tmp_path / "checkpoint-12") is None
