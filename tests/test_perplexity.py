"""Perplexity: a hand-computed case, invariances and the sliding window, through the evaluate metric."""

from __future__ import annotations

import math

import pytest
import torch

from climate_sft.evaluation import load_metric

TEXTS = [
    "Sea ice reflects sunlight; open water absorbs it, so melting ice warms the Arctic further.",
    "Heatwaves grow longer.",
    "Carbon dioxide stays in the atmosphere for centuries, which is why emissions add up over time "
    "and the warming they cause lasts long after they stop. " * 3,
]


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # evaluate copies metric modules there


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _ppl(model, tokenizer, texts=TEXTS, **kwargs):
    kwargs.setdefault("max_length", 512)
    return load_metric().compute(predictions=texts, model=model, tokenizer=tokenizer, **kwargs)


def test_windows_score_every_token_once():
    from climate_sft.perplexity import windows

    for n, length, stride in [(10, 4, 2), (10, 4, 4), (3, 8, 4), (100, 16, 5), (1, 4, 2)]:
        spans = windows(n, length, stride)
        assert sum(s for *_, s in spans) == max(0, n - 1)
        scored = [t for a, b, s in spans for t in range(b - s, b)]
        assert scored == list(range(1, n))  # each token once, in order, never token 0
        assert all(b - a <= length and b - s - a >= min(length - stride, b - s) for a, b, s in spans)


def test_hand_computed_perplexity(tiny):
    """exp(mean NLL) over all tokens, computed here from one plain forward pass per document."""
    model, tokenizer = tiny
    total, count = 0.0, 0
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            log_probs = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            total -= log_probs.gather(-1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1
    result = _ppl(model, tokenizer)
    assert result["tokens"] == count
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    # not a mean of per-document perplexities: short documents do not weigh more than their tokens
    per_doc = [d["perplexity"] for d in result["per_document"]]
    assert result["perplexity"] != pytest.approx(sum(per_doc) / len(per_doc), rel=1e-3)


def test_batch_size_and_padding_side_do_not_matter(tiny):
    model, tokenizer = tiny
    reference = _ppl(model, tokenizer, batch_size=1)["perplexity"]
    for batch_size in (2, 3):
        for side in ("right", "left"):
            got = _ppl(model, tokenizer, batch_size=batch_size, padding_side=side)["perplexity"]
            assert got == pytest.approx(reference, rel=1e-5), (batch_size, side)


def test_sliding_window_equals_full_context_when_the_document_fits(tiny):
    model, tokenizer = tiny
    full = _ppl(model, tokenizer, max_length=512)
    longest = max(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    fitted = _ppl(model, tokenizer, max_length=longest, stride=7)
    assert fitted["perplexity"] == pytest.approx(full["perplexity"], rel=1e-6)
    windowed = _ppl(model, tokenizer, max_length=16, stride=8)  # less context: a different, valid number
    assert windowed["tokens"] == full["tokens"]


def test_an_adapter_that_changes_nothing_gives_the_base_number(tiny):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    base = _ppl(model, tokenizer)["perplexity"]
    adapted = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # B = 0 at init
    try:
        assert _ppl(adapted, tokenizer)["perplexity"] == pytest.approx(base, rel=1e-6)
    finally:
        adapted.unload()
