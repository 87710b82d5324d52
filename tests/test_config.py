"""Recipe loading: every mistake is one line naming the file (or command line), the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from climate_sft.config import RecipeError, RecipeParser, apply_effective_batch, load_recipe, preflight

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def _errors(recipe_path, *overrides, check=load_recipe) -> list[str]:
    with pytest.raises(RecipeError) as info:
        recipe = load_recipe(recipe_path, list(overrides))
        if check is preflight:
            preflight(recipe)
    return str(info.value).splitlines()


def _error(recipe_path, *overrides, check=load_recipe) -> str:
    lines = _errors(recipe_path, *overrides, check=check)
    assert len(lines) == 1, lines
    return lines[0]


def test_a_valid_recipe_loads(tiny_recipe, tiny_model_dir):
    recipe = load_recipe(tiny_recipe(learning_rate="2e-4"))  # YAML reads 2e-4 as a string
    assert recipe.training.learning_rate == 2e-4
    assert recipe.model.model_name_or_path == str(tiny_model_dir)
    assert recipe.training.packing_strategy == "bfd_split"  # project default: no dropped tokens
    preflight(recipe)


def test_command_line_overrides_the_recipe(tiny_recipe):
    recipe = load_recipe(
        tiny_recipe(), ["--learning_rate", "3e-3", "--max_length=128", "--packing_strategy", "wrapped"]
    )
    assert (recipe.training.learning_rate, recipe.training.max_length) == (3e-3, 128)
    assert recipe.training.packing_strategy == "wrapped"
    assert recipe.sources["learning_rate"] == "command line"


def test_auto_batch_size_is_recorded(tiny_recipe):
    recipe = load_recipe(tiny_recipe(per_device_train_batch_size="auto", effective_batch_size=8))
    assert recipe.training.auto_batch_size and recipe.training.per_device_train_batch_size == 1
    from_cli = load_recipe(tiny_recipe(effective_batch_size=8), ["--per_device_train_batch_size", "auto"])
    assert from_cli.training.auto_batch_size


def test_auto_batch_size_needs_an_effective_batch(tiny_recipe):
    assert "effective_batch_size" in _error(tiny_recipe(per_device_train_batch_size="auto"))


def test_unknown_key_suggests_the_closest(tiny_recipe):
    message = _error(tiny_recipe(learning_rat=1e-4))
    assert "recipe.yaml" in message and "'learning_rat'" in message and "did you mean 'learning_rate'" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning_rate", "fast", "float"),
        ("max_steps", 2.5, "int"),
        ("packing", "sometimes", "true or false"),
        ("packing_strategy", "greedy", "one of"),
        ("eval_strategy", True, "one of"),
        ("lora_r", [8, 16], "single value"),
    ],
)
def test_wrong_type_names_the_key_and_type(tiny_recipe, key, value, expected):
    message = _error(tiny_recipe(**{key: value}))
    assert f"'{key}'" in message and expected in message


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_train_epochs", -1),
        ("save_steps", -3),
        ("lora_r", 0),
        ("lora_r", -4),
        ("learning_rate", -1),
        ("lora_dropout", 1.5),
        ("per_device_train_batch_size", 0),
        ("max_length", 0),
        ("max_length", -5),
        ("max_steps", 0),
        ("gradient_accumulation_steps", 0),
        ("effective_batch_size", 0),
        ("logging_steps", 0),
    ],
)
def test_values_out_of_range_are_refused(tiny_recipe, key, value):
    overrides = {"max_steps": -1} if key == "num_train_epochs" else {}
    overrides.update(save_strategy="steps") if key == "save_steps" else None
    message = _error(tiny_recipe(**{**overrides, key: value}))
    assert f"key '{key}'" in message and str(value) in message


def test_every_problem_is_reported_at_once_one_line_each(tiny_recipe):
    lines = _errors(tiny_recipe(lora_r=0, lora_dropout=2.0, learning_rate=-1.0, fp16=True, bf16=True))
    assert len(lines) == 4, lines
    assert all("recipe.yaml: key '" in line for line in lines)


def test_a_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("learning_rate: 1.0e-4\nlora_r: 8\nlearning_rate: 2.0e-4\n")
    message = _error(path)
    assert "twice.yaml" in message and "line 3" in message and "'learning_rate' is written twice" in message


def test_fp16_and_bf16_together(tiny_recipe):
    assert "fp16 and bf16" in _error(tiny_recipe(fp16=True, bf16=True))


def test_4bit_without_peft(tiny_recipe):
    assert "use_peft: true" in _error(tiny_recipe(load_in_4bit=True, use_peft=False))


def test_effective_batch_and_accumulation_together(tiny_recipe):
    assert "keep effective_batch_size" in _error(tiny_recipe(effective_batch_size=8, gradient_accumulation_steps=2))


def test_effective_batch_that_does_not_split_evenly(tiny_recipe):
    recipe = load_recipe(tiny_recipe(per_device_train_batch_size=3, effective_batch_size=8))
    with pytest.raises(RecipeError, match="8 is not a multiple of per_device_train_batch_size 3 x 2 process"):
        apply_effective_batch(recipe, world_size=2)
    apply_effective_batch(load_recipe(tiny_recipe(per_device_train_batch_size=2, effective_batch_size=8)), 2)


def test_missing_corpus(tiny_recipe, tmp_path):
    message = _error(tiny_recipe(corpus_dir=str(tmp_path / "nowhere")), check=preflight)
    assert "'corpus_dir'" in message and "climate-sft extract" in message


def test_damaged_corpus(tiny_recipe, tmp_path):
    (tmp_path / "broken" / "dataset").mkdir(parents=True)
    (tmp_path / "broken" / "dataset" / "dataset_dict.json").write_text('{"splits": ["tr')
    assert "damaged" in _error(tiny_recipe(corpus_dir=str(tmp_path / "broken")), check=preflight)


@pytest.mark.parametrize("key", ["eval_split", "test_split"])
def test_a_split_the_corpus_lacks(tiny_recipe, key):
    message = _error(tiny_recipe(**{key: "holdout"}), check=preflight)
    assert f"key '{key}'" in message and "no split 'holdout'" in message and "train" in message


def test_lora_target_module_the_model_lacks(tiny_recipe):
    message = _error(tiny_recipe(lora_target_modules=["q_proj", "no_such_module"]), check=preflight)
    assert "'no_such_module'" in message and "q_proj" in message


def test_malformed_list_on_the_command_line(tiny_recipe):
    message = _error(tiny_recipe(), "--lora_target_modules", "[q_proj")
    assert "command line" in message and "--lora_target_modules q_proj v_proj" in message


@pytest.mark.parametrize("model", ["./models/missing", "/no/such/model", "missing_package/model.Q4.gguf"])
def test_missing_model(tiny_recipe, model):
    message = _error(tiny_recipe(model_name_or_path=model), check=preflight)
    assert "'model_name_or_path'" in message and model.split("/")[-1] in message


def test_missing_absolute_gguf_gives_a_clean_hint(tiny_recipe):
    message = _error(tiny_recipe(model_name_or_path="/nowhere/model.gguf"), check=preflight)
    assert "model.gguf not found" in message and "pip install --no-deps )" not in message


def test_hub_id_missing_from_the_offline_cache(tiny_recipe):
    assert "HF_HUB_OFFLINE" in _error(tiny_recipe(model_name_or_path="meta-llama/Not-A-Cached-Model"), check=preflight)


def test_bad_command_line_flag(tiny_recipe):
    message = _error(tiny_recipe(), "--learning_rat", "1")
    assert "command line" in message and "did you mean 'learning_rate'" in message


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("learning_rate: 1e-4\nlora_target_modules: [q_proj\n")
    assert "broken.yaml" in _error(path) and "line" in _error(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_recipe_says_so(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    assert "the recipe is empty" in _error(path)


def test_missing_recipe_file_lists_the_shipped_ones(tmp_path):
    message = _error(tmp_path / "nope.yaml")
    assert "no such recipe file" in message and "qlora_h100" in message


def test_a_folder_as_recipe(tmp_path):
    assert "is a folder" in _error(tmp_path)


def test_a_shipped_recipe_loads_by_name():
    assert load_recipe("smollm2_cpu").path.endswith("recipes/smollm2_cpu.yaml")


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_shipped_recipes_load_through_the_real_loader(recipe, monkeypatch):
    """Every shipped recipe loads, and starts with its comment header and its command."""
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)  # H100 recipes
    text = recipe.read_text()
    assert text.startswith("#") and ("climate-sft train --config" in text or "make " in text)
    loaded = load_recipe(recipe)
    assert loaded.training.output_dir and loaded.model.model_name_or_path


def test_yaml_no_stays_a_string_where_the_key_takes_strings(tiny_recipe, tmp_path):
    text = tiny_recipe().read_text().replace("eval_strategy: 'no'", "eval_strategy: no")
    path = tmp_path / "no.yaml"
    path.write_text(text.replace("save_strategy: 'no'", "save_strategy: no"))
    assert "save_strategy: no\n" in path.read_text()
    recipe = load_recipe(path, ["--lora_target_modules", "q_proj", "v_proj"])
    assert recipe.training.eval_strategy == "no" and recipe.training.save_strategy == "no"
    assert recipe.model.lora_target_modules == ["q_proj", "v_proj"]


def test_help_keys_lists_every_field_with_its_help():
    text = RecipeParser().known_keys()
    assert "corpus_dir: corpus folder" in text and "lora_r:" in text and "effective_batch_size: sequences" in text


@pytest.mark.parametrize("tracker, install", [("wandb", "climate-sft[wandb]"), ("mlflow", "climate-sft[mlflow]")])
def test_a_tracker_that_is_not_installed_fails_with_the_install_command(tiny_recipe, tracker, install, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    lines = _errors(tiny_recipe(report_to=tracker))
    expected = f"key 'report_to': {tracker} is not installed: pip install '{install}' (or report_to: none)"
    assert len(lines) == 1 and lines[0].endswith(expected), lines
    # control: installed, it passes (tensorboard is a dependency)
    assert load_recipe(tiny_recipe(report_to=["tensorboard"])).training.report_to == ["tensorboard"]
