"""Packed documents must not see each other, through the exact path training uses."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import recipe_maker

from climate_sft.config import load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.modeling import load_tokenizer
from climate_sft.packing import (
    _boundaries_from_positions,
    exact_fallback,
    register_varlen_attention,
    varlen_attention_forward,
    varlen_unsuitable,
)
from climate_sft.trainer import build_trainer


def _trainer(make_recipe, attn):
    recipe = load_recipe(make_recipe(attn_implementation=attn, max_length=256))
    tokenizer = load_tokenizer(recipe.model)
    trainer = build_trainer(recipe, load_corpus(recipe.data.corpus_dir), tokenizer)
    # LoRA B starts at zero; make the adapters matter so the test covers them too
    for name, param in trainer.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return trainer, tokenizer


def _token_log_probs(trainer, rows, **extra):
    inputs = trainer._prepare_inputs(trainer.data_collator(rows))
    inputs.update(extra)
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(**inputs, use_cache=False, fused_lm_head=True)
    return out.log_probs[0]


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen"])
def test_a_document_scores_the_same_packed_or_alone(tiny_recipe, attn):
    trainer, tokenizer = _trainer(tiny_recipe, attn)
    first = tokenizer("Glaciers retreat as summers warm and winter snow thins.")["input_ids"]
    second = tokenizer("The ocean absorbs heat and carbon dioxide, and its water expands.")["input_ids"]
    packed = _token_log_probs(trainer, [{"input_ids": first + second, "seq_lengths": [len(first), len(second)]}])
    alone = _token_log_probs(trainer, [{"input_ids": second, "seq_lengths": [len(second)]}])
    after = packed[len(first) :]
    assert after.shape == alone.shape and alone.abs().sum() > 0
    assert torch.linalg.norm(after - alone) / torch.linalg.norm(alone) < 1e-4


def test_the_check_would_catch_mixing(tiny_recipe):
    """Control: the same batch without document boundaries (one running sequence) scores differently."""
    trainer, tokenizer = _trainer(tiny_recipe, "sdpa")
    first = tokenizer("Glaciers retreat as summers warm and winter snow thins.")["input_ids"]
    second = tokenizer("The ocean absorbs heat and carbon dioxide, and its water expands.")["input_ids"]
    mixed = _token_log_probs(trainer, [{"input_ids": first + second, "seq_lengths": [len(first) + len(second)]}])
    alone = _token_log_probs(trainer, [{"input_ids": second, "seq_lengths": [len(second)]}])
    after = mixed[len(first) + 1 :]  # the first token of `second` is unscored when alone
    assert torch.linalg.norm(after - alone[1:]) / torch.linalg.norm(alone[1:]) > 1e-3


def test_varlen_matches_one_attention_call_with_a_block_causal_mask():
    """Reference: a single SDPA call over the whole packed row with an explicit block-diagonal causal mask."""
    register_varlen_attention()
    torch.manual_seed(0)
    heads, kv_heads, dim, lengths = 4, 2, 16, [5, 9, 3]
    total = sum(lengths)
    q = torch.randn(1, heads, total, dim)
    k, v = torch.randn(2, 1, kv_heads, total, dim)
    cu = torch.tensor([0, 5, 14, 17], dtype=torch.int32)
    module = torch.nn.Module()
    module.num_key_value_groups = heads // kv_heads
    out, _ = varlen_attention_forward(module, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    document = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    mask = (document[:, None] == document[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=mask
    )
    torch.testing.assert_close(out[0], ref[0].transpose(0, 1))


def test_varlen_model_gives_the_logits_of_the_sdpa_block_mask(tiny_recipe):
    """Two implementations of document separation agree through the whole model, adapters included."""
    varlen, tokenizer = _trainer(tiny_recipe, "varlen")
    sdpa, _ = _trainer(tiny_recipe, "sdpa")
    sdpa.model.load_state_dict(varlen.model.state_dict())
    first = tokenizer("Glaciers retreat as summers warm and winter snow thins.")["input_ids"]
    second = tokenizer("The ocean absorbs heat and carbon dioxide, and its water expands.")["input_ids"]
    row = [{"input_ids": first + second, "seq_lengths": [len(first), len(second)]}]
    torch.testing.assert_close(_token_log_probs(varlen, row), _token_log_probs(sdpa, row), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "model_type, extra, unsuitable",
    [
        ("llama", {}, False),
        ("mistral", {"sliding_window": 4096}, True),
        ("qwen2", {"use_sliding_window": False}, False),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 512, "max_window_layers": 0}, True),
        ("gemma2", {}, True),
    ],
)
def test_varlen_only_where_it_computes_what_the_model_does(model_type, extra, unsuitable):
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, **extra)
    assert (varlen_unsuitable(config) is not None) == unsuitable, varlen_unsuitable(config)


def test_boundaries_come_from_restarting_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert _boundaries_from_positions(positions).tolist() == [0, 3, 5, 9]
    assert _boundaries_from_positions(torch.arange(6)[None]) is None  # one document: plain causal


@pytest.mark.parametrize("model_type, fallback", [("mistral", "sdpa"), ("gemma2", "eager")])
def test_the_fallback_is_the_attention_that_applies_the_window_and_soft_cap(model_type, fallback):
    from transformers import AutoConfig

    assert exact_fallback(AutoConfig.for_model(model_type)) == fallback  # transformers' sdpa refuses softcap


def test_varlen_needs_the_kernel_on_gpu(monkeypatch):
    from transformers import AutoConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("climate_sft.packing.varlen_kernel_available", lambda: False)
    assert "has no torch.nn.attention.varlen.varlen_attn" in varlen_unsuitable(AutoConfig.for_model("llama"))
    monkeypatch.setattr("climate_sft.packing.varlen_kernel_available", lambda: True)
    assert varlen_unsuitable(AutoConfig.for_model("llama")) is None  # control


SLIDING_WINDOW = 4  # shorter than the test sentences, so the window changes what a token sees


@pytest.fixture(scope="module")
def sliding_model_dir(tmp_path_factory, tiny_tokenizer_dir):
    """A tiny random Mistral with a sliding window: the attention varlen does not apply."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    config = MistralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        sliding_window=SLIDING_WINDOW,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_mistral")
    MistralForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _packed_and_alone(trainer, tokenizer, alone_trainer=None):
    first = tokenizer("Glaciers retreat as summers warm and winter snow thins.")["input_ids"]
    second = tokenizer("The ocean absorbs heat and carbon dioxide, and its water expands.")["input_ids"]
    packed = _token_log_probs(trainer, [{"input_ids": first + second, "seq_lengths": [len(first), len(second)]}])
    alone = _token_log_probs(alone_trainer or trainer, [{"input_ids": second, "seq_lengths": [len(second)]}])
    assert len(second) > 2 * SLIDING_WINDOW
    return packed[len(first) :], alone


def test_a_sliding_window_model_falls_back_and_scores_a_packed_document_as_alone(
    sliding_model_dir, tiny_corpus_dir, tmp_path, caplog
):
    make = recipe_maker(tmp_path, sliding_model_dir, tiny_corpus_dir)
    with caplog.at_level(logging.WARNING, logger="climate_sft.modeling"):
        trainer, tokenizer = _trainer(make, None)  # packing on, no attention named: varlen would be the default
    assert trainer.model.config._attn_implementation == "sdpa"
    (notice,) = [r.getMessage() for r in caplog.records if "instead of varlen" in r.getMessage()]
    assert "sliding-window" in notice and "\n" not in notice
    after, alone = _packed_and_alone(trainer, tokenizer)
    assert torch.linalg.norm(after - alone) / torch.linalg.norm(alone) < 1e-4


def test_varlen_would_score_a_sliding_window_model_wrongly(sliding_model_dir, tiny_corpus_dir, tmp_path, monkeypatch):
    """Control: with the check switched off, varlen runs and the packed document no longer scores as the model's
    own attention scores it alone."""
    make = recipe_maker(tmp_path, sliding_model_dir, tiny_corpus_dir)
    truth, tokenizer = _trainer(make, "sdpa")
    monkeypatch.setattr("climate_sft.modeling.varlen_unsuitable", lambda config: None)
    varlen, _ = _trainer(make, None)
    assert varlen.model.config._attn_implementation == "varlen"
    varlen.model.load_state_dict(truth.model.state_dict())
    after, alone = _packed_and_alone(varlen, tokenizer, alone_trainer=truth)
    assert torch.linalg.norm(after - alone) / torch.linalg.norm(alone) > 1e-3
