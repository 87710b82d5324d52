"""Recipe validation: every mistake is one line naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from climate_sft.config import RecipeError, check_values, load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def _error(recipe_path, *overrides) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_path, list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_valid_recipe_loads(tiny_recipe, tiny_model_dir):
    recipe = load_recipe(tiny_recipe(learning_rate="2e-4"))  # YAML reads 2e-4 as a string
    assert recipe.training.learning_rate == 2e-4
    assert recipe.model.model_name_or_path == str(tiny_model_dir)
    assert recipe.training.packing_strategy == "bfd_split"  # project default: no dropped tokens


def test_command_line_overrides_the_recipe(tiny_recipe):
    recipe = load_recipe(tiny_recipe(), ["--learning_rate", "3e-3", "--max_length=128", "--packing_strategy", "wrapped"])
    assert (recipe.training.learning_rate, recipe.training.max_length) == (3e-3, 128)
    assert recipe.training.packing_strategy == "wrapped"


def test_auto_batch_size_is_recorded(tiny_recipe):
    recipe = load_recipe(tiny_recipe(per_device_train_batch_size="auto", effective_batch_size=8))
    assert recipe.corpus.auto_batch_size and recipe.training.per_device_train_batch_size == 1


def test_unknown_key_suggests_the_closest(tiny_recipe):
    message = _error(tiny_recipe(learning_rat=1e-4))
    assert "recipe.yaml" in message and "'learning_rat'" in message and "did you mean 'learning_rate'" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [("learning_rate", "fast", "float"), ("max_steps", 2.5, "int"), ("packing", "sometimes", "bool"),
     ("packing_strategy", "greedy", "one of")],
)
def test_wrong_type_names_the_key_and_type(tiny_recipe, key, value, expected):
    message = _error(tiny_recipe(**{key: value}))
    assert f"'{key}'" in message and expected in message


def test_fp16_and_bf16_together(tiny_recipe):
    assert "'fp16' and 'bf16'" in _error(tiny_recipe(fp16=True, bf16=True))


def test_4bit_without_peft(tiny_recipe):
    assert "use_peft: true" in _error(tiny_recipe(load_in_4bit=True, use_peft=False))


def test_missing_corpus(tiny_recipe, tmp_path):
    message = _error(tiny_recipe(corpus_dir=str(tmp_path / "nowhere")))
    assert "'corpus_dir'" in message and "climate-sft extract" in message


@pytest.mark.parametrize("model", ["./models/missing", "/no/such/model", "missing-package/model.Q4.gguf"])
def test_missing_model(tiny_recipe, model):
    message = _error(tiny_recipe(model_name_or_path=model))
    assert "'model_name_or_path'" in message and model.split("/")[-1] in message


def test_hub_id_missing_from_the_offline_cache(tiny_recipe):
    assert "HF_HUB_OFFLINE" in _error(tiny_recipe(model_name_or_path="meta-llama/Not-A-Cached-Model"))


def test_bad_command_line_flag(tiny_recipe):
    assert "command line" in _error(tiny_recipe(), "--no_such_key", "1")


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("learning_rate: 1e-4\nlora_target_modules: [q_proj\n")
    assert "broken.yaml" in _error(path) and "line" in _error(path)


def test_missing_recipe_file(tmp_path):
    assert "no such recipe file" in _error(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_shipped_recipes_are_valid(recipe):
    """Every key of every shipped recipe is known and well typed, and each starts with its comment header."""
    text = recipe.read_text()
    assert text.startswith("#") and ("climate-sft train --config" in text or "make " in text)
    values = yaml.safe_load(text)
    if str(values.get("per_device_train_batch_size")) == "auto":
        values["per_device_train_batch_size"] = 1
    check_values(values, str(recipe))
    assert not (values.get("fp16") and values.get("bf16"))
    assert values.get("use_peft") or not values.get("load_in_4bit")


def test_yaml_no_stays_a_string_where_the_key_takes_strings(tiny_recipe):
    recipe = load_recipe(tiny_recipe(eval_strategy=False), ["--save_strategy", "no", "--lora_target_modules", "[q_proj, v_proj]"])
    assert recipe.training.eval_strategy == "no" and recipe.training.save_strategy == "no"
    assert recipe.model.lora_target_modules == ["q_proj", "v_proj"]
