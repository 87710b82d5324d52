"""Round-3 kernel levers through the real trainer on CPU: fp8 base weights (emulated), fused LoRA, and the
FlashAttention build selection. (The overlapped offload lever is TRL's `activation_offloading`, which needs an
accelerator: it is measured on the GPU only.)"""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import recipe_maker

from climate_sft import packing
from climate_sft.config import RecipeError, load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.fp8 import Fp8Linear
from climate_sft.modeling import load_tokenizer
from climate_sft.trainer import build_trainer


@pytest.fixture
def synthetic_recipe(tmp_path, tiny_model_dir, synthetic_corpus_dir):
    return recipe_maker(tmp_path, tiny_model_dir, synthetic_corpus_dir)


def _losses(recipe_path):
    recipe = load_recipe(recipe_path)
    trainer = build_trainer(recipe, load_corpus(recipe.data.corpus_dir), load_tokenizer(recipe.model))
    trainer.train()
    return trainer, [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_fused_lora_trains_as_peft_does(synthetic_recipe):
    common = dict(max_steps=4, lora_dropout=0.0, learning_rate=1e-2)
    _, reference = _losses(synthetic_recipe(**common))
    trainer, fused = _losses(synthetic_recipe(**common, fused_lora=True))
    assert trainer.kernel_levers["fused_lora_layers"] == 4 * trainer.model.config.num_hidden_layers
    assert fused == pytest.approx(reference, rel=1e-5)


def test_fp8_base_weights_train_close_to_float(synthetic_recipe):
    common = dict(max_steps=4, lora_dropout=0.0, learning_rate=1e-2)
    _, reference = _losses(synthetic_recipe(**common))
    trainer, fp8 = _losses(synthetic_recipe(**common, fp8_base_weights=True))
    swapped = [m for m in trainer.model.modules() if isinstance(m, Fp8Linear)]
    # every projection of every layer (LoRA's base layers and the MLP), not the LM head
    assert (
        len(swapped)
        == trainer.kernel_levers["fp8_base_weights"]["layers"]
        == 7 * trainer.model.config.num_hidden_layers
    )
    assert fp8 == pytest.approx(reference, rel=0.01) and fp8 != pytest.approx(reference, rel=1e-6)


def test_recipes_that_cannot_use_the_levers_are_refused(tiny_recipe):
    with pytest.raises(RecipeError, match="fp8_base_weights"):
        load_recipe(tiny_recipe(fp8_base_weights=True, load_in_4bit=True))
    with pytest.raises(RecipeError, match="fused_lora"):
        load_recipe(tiny_recipe(fused_lora=True, lora_dropout=0.1))
    with pytest.raises(RecipeError, match="flash_attention_impl"):
        load_recipe(tiny_recipe(flash_attention_impl="FA2"))


class _Attention:
    """torch.nn.attention's registry as a machine offers it: `broken` builds fail to activate."""

    def __init__(self, listed, broken):
        self.listed, self.broken, self.tried = listed, broken, []

    def list_flash_attention_impls(self):
        return self.listed

    def activate_flash_attention_impl(self, impl):
        self.tried.append(impl)
        if impl in self.broken:
            raise ModuleNotFoundError(f"No module named '{self.broken[impl]}'")


@pytest.fixture
def machine(monkeypatch):
    def make(listed=("FA3", "FA4"), broken=(), cuda=True):
        attention = _Attention(list(listed), dict(broken))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.nn, "attention", attention)
        return attention

    return make


def test_fa3_is_taken_where_it_loads(machine, caplog):
    attention = machine()
    assert packing.activate_flash_attention("FA3") == "FA3" and attention.tried == ["FA3"]
    assert not caplog.records


def test_fa4_where_fa3_is_missing(machine, caplog):
    attention = machine(broken={"FA3": "flash_attn_interface"})
    assert packing.activate_flash_attention("FA3") == "FA4" and attention.tried == ["FA3", "FA4"]
    assert not caplog.records


def test_built_in_with_one_notice_where_none_loads(machine, caplog):
    attention = machine(listed=["FA3"], broken={"FA3": "flash_attn_interface"})
    with caplog.at_level(logging.WARNING):
        assert packing.activate_flash_attention("FA3") is None
    assert attention.tried == ["FA3"] and len(caplog.records) == 1
    assert "flash_attn_interface" in caplog.text and "FA4: not offered" in caplog.text


def test_nothing_tried_without_cuda_or_without_the_key(machine, caplog):
    attention = machine(cuda=False)
    assert packing.activate_flash_attention(None) is None and not caplog.records
    with caplog.at_level(logging.WARNING):
        assert packing.activate_flash_attention("FA4") is None
    assert attention.tried == [] and "no CUDA" in caplog.text


def test_the_report_says_when_fp8_was_used():
    from climate_sft.report import techniques

    stats = {"precision": "bf16", "packing_strategy": None, "attn_implementation": "varlen"}
    levers = {"fp8_base_weights": {"scaling": "rowwise", "layers": 196, "gemm": "torch._scaled_mm (e4m3)"}}
    used = techniques({"use_peft": True}, {**stats, "kernel_levers": {**levers, "fused_lora_layers": 112}})
    assert any("fp8 (e4m3, rowwise) base weights in 196 layers" in t for t in used)
    assert any("fused LoRA forward in 112 layers" in t for t in used)
    assert not any("fp8" in t for t in techniques({"use_peft": True}, stats))  # control: a run without it
