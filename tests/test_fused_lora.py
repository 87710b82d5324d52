"""Fused LoRA forward against PEFT's own, with a wrong-scaling control."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from climate_sft.fp8 import quantize_frozen_linears
from climate_sft.fused_lora import fuse_lora


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.v_proj, self.o_proj = nn.Linear(32, 24), nn.Linear(32, 24), nn.Linear(24, 32)

    def forward(self, x):
        return self.o_proj(torch.tanh(self.q_proj(x)) * self.v_proj(x))


def _peft(dropout=0.0):
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=16, lora_dropout=dropout, target_modules=["q_proj", "v_proj", "o_proj"])
    model = get_peft_model(Block(), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: make the adapters count
            nn.init.normal_(param)
    return model


def _run(model, x):
    model.zero_grad()
    out = model(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_outputs_and_adapter_gradients_equal_peft():
    reference = _peft()
    fused = copy.deepcopy(reference)
    assert fuse_lora(fused) == 3
    x = torch.randn(3, 5, 32)
    out_ref, grads_ref = _run(reference, x)
    out, grads = _run(fused, x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads_ref.keys() and len(grads) == 6
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-5, atol=1e-6)
    with fused.disable_adapter():  # the base model's scores still come from the same layers
        torch.testing.assert_close(fused(x), _base(reference, x))


def _base(model, x):
    with model.disable_adapter():
        return model(x)


def test_a_wrong_scaling_is_caught():
    reference = _peft()
    fused = copy.deepcopy(reference)
    fuse_lora(fused)
    for module in fused.modules():
        if hasattr(module, "scaling"):
            module.scaling["default"] *= 1.1
    x = torch.randn(3, 5, 32)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(_run(fused, x)[0], _run(reference, x)[0], rtol=1e-5, atol=1e-6)


def test_layers_it_cannot_express_keep_peft_forward():
    assert fuse_lora(_peft(dropout=0.1)) == 0


def test_over_fp8_base_layers():
    model = _peft()
    quantize_frozen_linears(model)
    reference_out = _run(model, x := torch.randn(3, 5, 32))[0]
    assert fuse_lora(model) == 3
    torch.testing.assert_close(_run(model, x)[0], reference_out, rtol=1e-5, atol=1e-6)


def test_same_losses_as_peft_over_a_few_steps():
    losses = []
    for fused in (False, True):
        model = _peft()
        if fused:
            fuse_lora(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        torch.manual_seed(1)
        run = []
        for _ in range(5):
            loss = model(torch.randn(4, 32)).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] != losses[0][:1] * 5  # the adapters did train
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=0)
