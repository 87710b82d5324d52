"""The eval command end to end on a tiny run: base and fine-tuned perplexity on the test split."""

from __future__ import annotations

import json

import pytest

from climate_sft import evaluation, train


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # evaluate copies metric modules there


def test_eval_command_writes_results(tiny_recipe, tmp_path):
    train.run(str(tiny_recipe(max_steps=4, learning_rate=5e-3)), [])
    results = evaluation.evaluate_run(tmp_path / "run")
    assert results == json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["split"] == "test" and results["documents"] >= 1 and results["tokens"] > 0
    assert results["base"]["perplexity"] > 1 and results["fine_tuned"]["perplexity"] > 1
    change = (results["fine_tuned"]["perplexity"] - results["base"]["perplexity"]) / results["base"]["perplexity"]
    assert results["relative_change"] == pytest.approx(change)
    assert "perplexity" in evaluation.summary_line(results, tmp_path / "run")
