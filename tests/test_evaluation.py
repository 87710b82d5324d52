"""The eval command end to end on a tiny run: base and fine-tuned perplexity on the test split, with intervals
over documents, and the same two models on general text (forgetting)."""

from __future__ import annotations

import json
import math

import pytest

from climate_sft import evaluation, general_text, train
from climate_sft.confidence import perplexity_intervals
from climate_sft.corpus import CorpusError


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # evaluate copies metric modules there


def test_eval_command_writes_results(tiny_recipe, tmp_path):
    train.run(str(tiny_recipe(max_steps=4, learning_rate=5e-3)), [])
    results = evaluation.evaluate_run(tmp_path / "run", limit=10)  # 10 items a task keep the tiny run quick
    assert results == json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["split"] == "test" and results["documents"] >= 1 and results["tokens"] > 0
    assert results["base"]["perplexity"] > 1 and results["fine_tuned"]["perplexity"] > 1
    change = (results["fine_tuned"]["perplexity"] - results["base"]["perplexity"]) / results["base"]["perplexity"]
    assert results["relative_change"] == pytest.approx(change)
    assert "perplexity" in evaluation.summary_line(results, tmp_path / "run")

    # per-document sums are kept, and the stored intervals are the bootstrap of exactly those sums
    documents = results["per_document"]
    for d in documents:
        assert math.exp(d["base_nll"] / d["tokens"]) == pytest.approx(d["base"])
    again = perplexity_intervals(
        [d["tokens"] for d in documents], [d["base_nll"] for d in documents], [d["fine_tuned_nll"] for d in documents]
    )
    assert results["base"]["interval"] == again["base"]["interval"]
    assert results["relative_change_interval"] == again["relative_change"]["interval"]
    assert (results["base"]["interval"] is None) == (results["documents"] < 2)
    assert results["tokenizer"]["vocabulary"] > 0

    # forgetting: the bundled general texts, scored by the same two models
    general = results["general_text"]
    assert general["bundled"] and general["documents"] == 5 and general["tokens"] > 2000
    assert general["relative_change"] == pytest.approx(
        general["fine_tuned"]["perplexity"] / general["base"]["perplexity"] - 1
    )
    assert general["threshold"] == evaluation.FORGETTING_THRESHOLD
    assert general["base"]["interval"][0] <= general["base"]["perplexity"] <= general["base"]["interval"][1]

    assert general["source"] == general_text.SOURCE and general["per_document"][0]["title"].startswith("Python")

    # task accuracy: the two generated tasks, base and fine-tuned on the same items
    tasks = results["tasks"]["results"]
    assert set(tasks) == {"heldout_passages", "general_passages"} and not tasks["heldout_passages"]["general"]
    for task in tasks.values():
        assert 1 < task["items"] <= 10 and 0 <= task["acc"]["base"]["accuracy"] <= 1
        assert task["acc"]["change"]["value"] == pytest.approx(
            task["acc"]["fine_tuned"]["accuracy"] - task["acc"]["base"]["accuracy"]
        )
    assert "heldout_passages accuracy" in evaluation.summary_line(results, tmp_path / "run")

    # a folder the user names, and a threshold of their own
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "note.md").write_text("# A note\n\nThe cat sat on the mat and looked out of the window.\n")
    mine = evaluation.evaluate_run(
        tmp_path / "run", general_text=folder, forgetting_threshold=0.5, tasks="heldout_passages", limit=2
    )
    assert mine["general_text"]["documents"] == 1 and not mine["general_text"]["bundled"]
    assert mine["general_text"]["threshold"] == 0.5 and mine["base"] == results["base"]
    assert list(mine["tasks"]["results"]) == ["heldout_passages"] and mine["tasks"]["results"]["heldout_passages"][
        "items"
    ] == min(2, tasks["heldout_passages"]["items"])


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda root: root / "absent", "no such folder"),
        (lambda root: root, "no .txt or .md file with text in it"),
    ],
)
def test_a_general_text_folder_without_text_is_one_line(tmp_path, make, expected):
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match=expected) as info:
        evaluation.general_texts(make(tmp_path))
    assert "--general-text" in str(info.value) and "\n" not in str(info.value)
