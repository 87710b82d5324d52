"""Model loading choices: how 4-bit weights are stored under FSDP and ZeRO-3, and the dequantized GGUF cache."""

from __future__ import annotations

import pytest
import torch

from climate_sft.config import RecipeError, load_recipe
from climate_sft.modeling import linear_module_names, load_model, publish_folder, quantization_config

# What `accelerate launch` puts in each process's environment for these configs.
LAUNCHES = {
    "fsdp": {"ACCELERATE_USE_FSDP": "true"},
    "zero3": {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
    "zero2": {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
    "one_process": {},
}


@pytest.fixture
def launched(monkeypatch):
    def launch(name):
        for key in ("ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in LAUNCHES[name].items():
            monkeypatch.setenv(key, value)

    return launch


def qlora(tiny_recipe, **overrides):
    return tiny_recipe(load_in_4bit=True, dtype="bfloat16", **overrides)


@pytest.mark.parametrize(
    ("launch", "storage"),
    [("fsdp", torch.bfloat16), ("zero3", torch.bfloat16), ("zero2", torch.uint8), ("one_process", torch.uint8)],
)
def test_4bit_weights_are_stored_in_the_compute_dtype_only_where_sharded(tiny_recipe, launched, launch, storage):
    launched(launch)
    recipe = load_recipe(qlora(tiny_recipe))
    assert quantization_config(recipe.model).bnb_4bit_quant_storage == storage


def test_the_storage_dtype_reaches_the_loaded_4bit_weights(tiny_recipe, launched):
    """On CPU too: bitsandbytes packs the 4-bit weights into bf16 words under FSDP, uint8 words otherwise."""
    seen = {}
    for launch in ("fsdp", "one_process"):
        launched(launch)
        model = load_model(load_recipe(qlora(tiny_recipe)).model)
        weight = model.model.layers[0].self_attn.q_proj.weight
        seen[launch] = (type(weight).__name__, weight.dtype)
    assert seen == {"fsdp": ("Params4bit", torch.bfloat16), "one_process": ("Params4bit", torch.uint8)}


@pytest.mark.parametrize("launch", ["fsdp", "zero3"])
def test_a_storage_dtype_that_cannot_be_sharded_is_refused_in_one_line(tiny_recipe, launched, launch):
    launched(launch)
    path = qlora(tiny_recipe, bnb_4bit_quant_storage="uint8")
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}: key 'bnb_4bit_quant_storage': uint8 cannot be sharded by FSDP or ZeRO-3 beside bfloat16 weights: "
        "write bnb_4bit_quant_storage: bfloat16 (the recipe's dtype), or leave the key out"
    )
    launched("zero2")  # control: the same recipe where weights are not sharded
    assert load_recipe(path).model.bnb_4bit_quant_storage == "uint8"


def test_sharded_4bit_weights_need_a_compute_dtype(tiny_recipe, launched):
    launched("fsdp")
    with pytest.raises(RecipeError, match=r"key 'dtype': 4-bit weights under FSDP or ZeRO-3 need a compute dtype"):
        load_recipe(tiny_recipe(load_in_4bit=True, dtype="auto"))


def test_lora_targets_are_read_without_deepspeed_partitioning_the_empty_model(tiny_recipe, monkeypatch):
    """Under a ZeRO-3 launch transformers builds models inside DeepSpeed's zero.Init, which cannot move the empty
    weights the target check uses (`accelerate launch --config_file deepspeed_zero3.yaml` failed in preflight)."""
    monkeypatch.setattr("transformers.modeling_utils.is_deepspeed_zero3_enabled", lambda: True)
    recipe = load_recipe(tiny_recipe())
    assert linear_module_names(recipe.model) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "lm_head",
    }


def _finished_folder(path, marker):
    path.mkdir()
    (path / "config.json").write_text(marker)


def test_a_dequantized_model_is_published_by_one_rename(tmp_path):
    _finished_folder(tmp_path / ".model.tmp-1", "mine")
    publish_folder(tmp_path / ".model.tmp-1", tmp_path / "cache" / "model")
    assert (tmp_path / "cache" / "model" / "config.json").read_text() == "mine"
    assert not (tmp_path / ".model.tmp-1").exists()


def test_two_processes_dequantizing_at_once_both_succeed(tmp_path):
    """The second to finish keeps the first one's folder (a demo crashed here when two runs started together)."""
    _finished_folder(tmp_path / "model", "first")
    _finished_folder(tmp_path / ".model.tmp-2", "second")
    publish_folder(tmp_path / ".model.tmp-2", tmp_path / "model")
    assert (tmp_path / "model" / "config.json").read_text() == "first"
    assert not (tmp_path / ".model.tmp-2").exists()


def test_a_folder_in_the_way_that_is_no_model_is_an_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stray.txt").write_text("x")
    _finished_folder(tmp_path / ".model.tmp-3", "third")
    with pytest.raises(OSError):
        publish_folder(tmp_path / ".model.tmp-3", tmp_path / "model")
