"""Packed documents must not see each other, through the exact path training uses."""

from __future__ import annotations

import pytest
import torch

from climate_sft.config import load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.modeling import load_tokenizer
from climate_sft.packing import (
    _boundaries_from_positions,
    register_varlen_attention,
    varlen_attention_forward,
    varlen_unsuitable,
)
from climate_sft.trainer import build_trainer


def _trainer(tiny_recipe, attn):
    recipe = load_recipe(tiny_recipe(attn_implementation=attn, max_length=256))
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
