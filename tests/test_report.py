"""REPORT.md from a run folder's own files, and the plain-words reading of its numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from climate_sft.report import context, forgetting, interpret, perplexity_change, write_report


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


def _evaluation(change_interval=(-0.25, -0.15), documents=2, general_change=0.02) -> dict:
    base, tuned = 24.0, 19.0
    return {
        "split": "test",
        "documents": documents,
        "tokens": 2800,
        "window": 256,
        "stride": 128,
        "precision": "fp32",
        "model": "some/model",
        "tokenizer": {"class": "GPT2TokenizerFast", "vocabulary": 49152},
        "base": {"perplexity": base, "mean_nll": 3.18, "interval": [19.0, 30.0] if change_interval else None},
        "fine_tuned": {"perplexity": tuned, "mean_nll": 2.94, "interval": [15.0, 24.0] if change_interval else None},
        "relative_change": tuned / base - 1,
        "relative_change_interval": list(change_interval) if change_interval else None,
        "bootstrap": {"resamples": 2000, "seed": 0, "level": 0.95, "over": "documents, paired"},
        "per_document": [
            {"id": "a", "title": "Doc A", "tokens": 1400, "base": 22.0, "fine_tuned": 18.0},
            {"id": "b", "title": "Doc B", "tokens": 1400, "base": 26.0, "fine_tuned": 20.0},
        ][:documents],
        "general_text": {
            "folder": "/somewhere/general",
            "bundled": True,
            "documents": 5,
            "tokens": 3700,
            "base": {"perplexity": 30.0, "interval": [25.0, 36.0]},
            "fine_tuned": {"perplexity": 30.0 * (1 + general_change), "interval": [26.0, 37.0]},
            "relative_change": general_change,
            "relative_change_interval": [general_change - 0.01, general_change + 0.01],
            "threshold": 0.05,
            "per_document": [],
        },
    }


def test_a_change_whose_interval_crosses_zero_is_not_distinguishable():
    line = perplexity_change(_evaluation(change_interval=(-0.3, 0.05)))
    assert line.startswith("Not distinguishable") and "[-30.0%, +5.0%]" in line and "includes zero" in line
    helped = perplexity_change(_evaluation(change_interval=(-0.25, -0.15)))  # the control: wholly below zero
    assert helped.startswith("Fine-tuning helped") and "wholly below zero" in helped and "[19.00, 30.00]" in helped
    hurt = _evaluation(change_interval=(0.1, 0.3))
    hurt["relative_change"] = 0.2
    assert perplexity_change(hurt).startswith("Fine-tuning hurt")


def test_one_test_document_says_there_is_no_interval():
    line = perplexity_change(_evaluation(change_interval=None, documents=1))
    assert line.startswith("Fine-tuning helped") and "no interval" in line
    assert any("no interval can be computed" in c for c in context(_evaluation(change_interval=None, documents=1)))


def test_forgetting_is_flagged_beyond_the_threshold_only():
    assert forgetting(_evaluation(general_change=0.08)["general_text"]).startswith("**Forgetting:**")
    calm = forgetting(_evaluation(general_change=0.03)["general_text"])
    assert calm.startswith("No sign of forgetting") and "+3.0%" in calm and "5 %" in calm
    assert forgetting(_evaluation(general_change=-0.1)["general_text"]).endswith("it did not rise.")


def test_the_report_gives_intervals_forgetting_and_context(tmp_path):
    (tmp_path / "training_stats.json").write_text(json.dumps(_stats()))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"use_peft": True, "lora_r": 8, "lora_alpha": 16}))
    (tmp_path / "eval_results.json").write_text(json.dumps(_evaluation(change_interval=(-0.3, 0.05))))
    text = write_report(tmp_path).read_text()
    for expected in (
        "| perplexity, base model (95 % interval) | 24.00 [19.00, 30.00] |",
        "| perplexity, fine-tuned (95 % interval) | 19.00 [15.00, 24.00] |",
        "| change (95 % interval, paired) | -20.8% [-30.0%, +5.0%] |",
        "| general text: base -> fine-tuned | 30.00 -> 30.60 (+2.0% [+1.0%, +3.0%]) |",
        "- Not distinguishable",
        "- No sign of forgetting",
        "## What the numbers can and cannot say",
        "GPT2TokenizerFast, 49,152 tokens",
        "The test split is 2 document(s), 2,800 tokens",
        "resampling these 2 test documents (2000 resamples",
        "the bundled general texts",
    ):
        assert expected in text, expected
    assert (tmp_path / "perplexity.png").is_file()


def test_titles_with_pipes_newlines_and_stars_stay_in_their_table_cell():
    import re

    from climate_sft.report import _cell

    title = "Sea level | rise\nin *two* parts"
    row = f"| {_cell(title)} | 12 |"
    assert "\n" not in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 3  # the row's own three separators, none from the title
    assert len(re.findall(r"(?<!\\)\|", "| Sea level | rise | 12 |")) == 4  # control: unescaped, the title splits
