"""GPU checks, run on the GPU machine (`pytest -m gpu`): the varlen kernel, document separation in the
recipes' precision, and fp16 QLoRA training with the grad scaler."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, tiny_tokenizer_dir):
    from scripts.random_model import save_random_model

    return save_random_model(tmp_path_factory.mktemp("small"), "small", tiny_tokenizer_dir, dtype="bfloat16")


@pytest.fixture
def gpu_recipe(tmp_path, small_model_dir, synthetic_corpus_dir):
    from helpers import recipe_maker

    make = recipe_maker(tmp_path, small_model_dir, synthetic_corpus_dir)
    return lambda **overrides: make(use_cpu=False, load_in_4bit=True, use_bnb_nested_quant=True, **overrides)


def test_varlen_kernel_matches_per_document_attention_in_bf16():
    from climate_sft.packing import varlen_attention_forward

    torch.manual_seed(0)
    heads, kv_heads, dim, lengths = 8, 2, 128, [700, 33, 1500, 1]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    total = sum(lengths)
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn(2, 1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16)
    module = torch.nn.Module()
    module.num_key_value_groups = heads // kv_heads
    out, _ = varlen_attention_forward(module, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, a:b].double(),
            k[:, :, a:b].double().repeat_interleave(4, 1),
            v[:, :, a:b].double().repeat_interleave(4, 1),
            is_causal=True,
        )[0].transpose(0, 1)
        assert torch.linalg.norm(out[0, a:b].double() - ref) / torch.linalg.norm(ref) < 1e-2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_packed_documents_stay_apart_in_the_recipe_precision(gpu_recipe, precision):
    from climate_sft.config import load_recipe
    from climate_sft.corpus import load_corpus
    from climate_sft.modeling import load_tokenizer
    from climate_sft.trainer import build_trainer

    dtype = "bfloat16" if precision == "bf16" else "float16"
    recipe = load_recipe(
        gpu_recipe(
            dtype=dtype, bf16=precision == "bf16", fp16=precision == "fp16", attn_implementation=None, max_length=1024
        )
    )
    tokenizer = load_tokenizer(recipe.model)
    trainer = build_trainer(recipe, load_corpus(recipe.data.corpus_dir), tokenizer)
    assert recipe.model.attn_implementation == "varlen"
    texts = load_corpus(recipe.data.corpus_dir)["train"]["text"]
    first, second = (tokenizer(t)["input_ids"][:400] for t in texts[:2])

    def log_probs(rows):
        inputs = trainer._prepare_inputs(trainer.data_collator(rows))
        trainer.model.eval()
        with torch.no_grad(), trainer.compute_loss_context_manager():
            return trainer.model(**inputs, use_cache=False, fused_lm_head=True).log_probs[0].float()

    alone = log_probs([{"input_ids": second, "seq_lengths": [len(second)]}])
    packed = log_probs([{"input_ids": first + second, "seq_lengths": [len(first), len(second)]}])[len(first) :]
    mixed = log_probs([{"input_ids": first + second, "seq_lengths": [len(first) + len(second)]}])[len(first) + 1 :]
    separated = (torch.linalg.norm(packed - alone) / torch.linalg.norm(alone)).item()
    leaked = (torch.linalg.norm(mixed - alone[1:]) / torch.linalg.norm(alone[1:])).item()
    assert separated < 2e-2, separated  # within bf16/fp16 rounding
    assert leaked > 5 * separated, (leaked, separated)  # and far from what mixing documents would give


def test_fp16_qlora_trains_with_the_grad_scaler(gpu_recipe):
    from climate_sft import train

    stats = train.run(
        str(gpu_recipe(dtype="float16", fp16=True, bf16=False, optim="paged_adamw_8bit", max_steps=4, max_length=512)),
        [],
    )
    assert stats["steps"] == 4 and all(math.isfinite(x["loss"]) for x in stats["losses"])
    assert stats["peak_gpu_memory_allocated_gb"] > 0 and stats["precision"] == "fp16"


@pytest.mark.parametrize("attn, expect_calls", [(None, True), ("sdpa", False)])
def test_the_varlen_kernel_runs_in_the_training_forward(gpu_recipe, monkeypatch, attn, expect_calls):
    """Count the calls of PyTorch's varlen kernel while training, not the config string; sdpa is the control."""
    import torch.nn.attention.varlen as varlen_module

    from climate_sft import train

    calls = []
    real = varlen_module.varlen_attn

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])  # tokens in the packed row
        return real(*args, **kwargs)

    monkeypatch.setattr(varlen_module, "varlen_attn", counting)
    stats = train.run(
        str(gpu_recipe(dtype="bfloat16", bf16=True, attn_implementation=attn, max_steps=2, max_length=512)), []
    )
    layers = 2  # the "small" architecture
    if expect_calls:
        assert stats["attn_implementation"] == "varlen" and len(calls) >= layers * stats["steps"]
        assert sum(calls) >= stats["tokens_seen"] * layers  # every trained token went through it in every layer
    else:
        assert calls == [] and stats["attn_implementation"] == "sdpa"
