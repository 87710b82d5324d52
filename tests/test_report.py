"""REPORT.md from a run folder's own files, and the plain-words reading of its numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from climate_sft.report import interpret, write_report


def _stats(eval_losses=(3.2, 3.1), **extra) -> dict:
    segment = {
        "steps": 4,
        "seconds": 8.0,
        "tokens": 4000,
        "warmup_steps_excluded": 3,
        "median_step_seconds": 2.0,
        "steady_tokens_per_second": 500.0,
        "step_seconds": [2.0] * 4,
        "step_tokens": [1000] * 4,
    }
    return {
        "recipe": "recipes/x.yaml",
        "model": "some/model",
        "device": "CPU (x86_64, 2 cores)",
        "precision": "fp32",
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "world_size": 1,
        "effective_batch_size": 8,
        "batch_size_search": None,
        "max_length": 256,
        "packing_strategy": "bfd_split",
        "attn_implementation": "varlen",
        "steps": 4,
        "epochs": 1.0,
        "tokens_seen": 4000,
        "train_seconds": 8.0,
        "tokens_per_second": 500.0,
        "segments": 1,
        "this_segment": segment,
        "peak_rss_gb": 1.5,
        "final_loss": 3.0,
        "losses": [{"step": i, "loss": 3.5 - 0.1 * i} for i in range(1, 5)],
        "eval_losses": [{"step": 2 * i, "eval_loss": v} for i, v in enumerate(eval_losses, 1)],
        **extra,
    }


@pytest.mark.parametrize(
    "eval_losses, expected",
    [
        ((3.2, 3.0), "still falling"),
        ((3.0, 3.2), "starting to overfit"),
        ((3.1, 3.1), "levelled off"),
        ((), "No validation loss"),
    ],
)
def test_the_validation_trend_in_words(eval_losses, expected):
    assert any(expected in line for line in interpret(_stats(eval_losses), None))


def test_report_answers_the_users_questions_from_the_files(tmp_path):
    (tmp_path / "training_stats.json").write_text(json.dumps(_stats()))
    (tmp_path / "recipe.yaml").write_text(
        yaml.safe_dump(
            {"load_in_4bit": True, "use_peft": True, "lora_r": 8, "lora_alpha": 16, "optim": "paged_adamw_8bit"}
        )
    )
    text = write_report(tmp_path).read_text()
    for expected in (
        "| per-device batch size | 4 (from the recipe) |",
        "| gradient accumulation | 2 |",
        "| effective batch size | 8 sequences",
        "peak process memory (RSS) 1.5 GB",
        "8.0 s for 4 steps",
        "500 tokens/s overall",
        "4-bit NF4",
        "run `climate-sft eval`",
    ):
        assert expected in text, expected
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "throughput.png").is_file()


def test_answers_section_shows_base_and_fine_tuned_side_by_side(tmp_path):
    (tmp_path / "training_stats.json").write_text(json.dumps(_stats()))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"use_peft": True}))
    assert "## Answers" not in write_report(tmp_path).read_text()  # no samples.json: no section
    sample = {
        "document": "d1",
        "title": "Ocean heat",
        "prompt": "The ocean has",
        "base": "a\nlot",
        "fine_tuned": "absorbed heat",
        "reference": "absorbed more",
    }
    samples = {"split": "test", "decoding": "greedy", "max_new_tokens": 48, "samples": [sample]}
    (tmp_path / "samples.json").write_text(json.dumps(samples))
    text = write_report(tmp_path).read_text()
    section = text.split("## Answers")[1].split("## Plots")[0]
    for expected in (
        "**1. Ocean heat**",
        "- prompt: The ocean has ...",
        "- base: ... a lot",
        "- fine-tuned: ... absorbed heat",
        "- the document goes on: ... absorbed more",
        "`test`",
    ):
        assert expected in section, expected
