"""fp8 frozen linear (emulated on CPU): against a float reference, with a wrong-scale control."""

import pytest
import torch
from torch import nn

from climate_sft import fp8
from climate_sft.fp8 import Fp8Linear, quantize, quantize_frozen_linears

# e4m3 keeps 3 mantissa bits: one rounding is at most 2^-4 = 6.25 % relative, a sum of many products with
# independent roundings lands far below that (about 2-3 % of the output's norm for two rounded operands)
BOUND = 0.05


def _relative(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def _layer_and_input(seed=0, tokens=64, k=96, n=80):
    torch.manual_seed(seed)
    linear = nn.Linear(k, n, bias=True).requires_grad_(False)
    # rows of very different size: what row-wise scales are for
    linear.weight.mul_(torch.logspace(-2, 1, n).unsqueeze(1))
    x = torch.randn(2, tokens // 2, k)
    return linear, x


@pytest.mark.parametrize("scaling", fp8.SCALINGS)
def test_forward_and_input_gradient_match_float(scaling):
    linear, x = _layer_and_input()
    layer = Fp8Linear(linear, scaling)
    x_ref, x_fp8 = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(2, 32, 80)
    (linear(x_ref) * upstream).sum().backward()
    out = layer(x_fp8)
    (out * upstream).sum().backward()
    assert _relative(out, linear(x)) < BOUND
    assert _relative(x_fp8.grad, x_ref.grad) < BOUND
    assert layer.weight_fp8.dtype == torch.float8_e4m3fn and layer.weight_fp8.element_size() == 1


def test_quantize_rounds_like_e4m3_and_a_wrong_scale_fails():
    linear, x = _layer_and_input()
    q, scale = quantize(linear.weight, "rowwise")
    assert float((q.float() * scale - linear.weight).abs().max()) <= float(linear.weight.abs().max()) / 16
    # control: the same layer with every row scale doubled is caught by the bound
    layer = Fp8Linear(linear, "rowwise")
    layer.weight_scale.mul_(2)
    assert _relative(layer(x), linear(x)) > 10 * BOUND


def test_rowwise_beats_tensorwise_on_uneven_rows():
    linear, x = _layer_and_input()
    errors = {s: _relative(Fp8Linear(linear, s)(x) - linear.bias, linear(x) - linear.bias) for s in fp8.SCALINGS}
    assert errors["rowwise"] < errors["tensorwise"]


def test_shared_input_is_quantized_once(monkeypatch):
    linear, x = _layer_and_input()
    layers = [Fp8Linear(linear) for _ in range(3)]
    calls = []
    real = fp8._quantize
    monkeypatch.setattr(fp8, "_quantize", lambda *a, **k: calls.append(1) or real(*a, **k))
    outs = [layer(x) for layer in layers]  # q/k/v reading one tensor
    assert len(calls) == 1 and all(torch.equal(o, outs[0]) for o in outs)
    layers[0](x.clone())  # control: another tensor is quantized afresh
    x.add_(1.0)  # ... and so is the same tensor once changed in place
    changed = layers[0](x)
    assert len(calls) == 3 and not torch.equal(changed, outs[0])
    del x
    assert fp8._shared.value is None  # the cached quantization dies with its source


def test_swaps_frozen_linears_but_not_the_head_or_adapters():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    model[0].requires_grad_(False)
    assert quantize_frozen_linears(model) == 1
    assert isinstance(model[0], Fp8Linear) and type(model[2]) is nn.Linear  # the trainable one stays
