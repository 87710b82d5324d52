"""fp8 (e4m3) matrix products for the frozen base weights under LoRA (`fp8_base_weights: true`).

The frozen linear layers of the decoder keep their weight in e4m3, quantized once with one scale per output row
(`fp8_scaling: rowwise`) or one for the whole matrix (`tensorwise`). Every step quantizes the activations going in
(forward) and the output gradients coming back (backward), and runs two GEMMs in fp8: the forward and the gradient
to the input. There is no weight-gradient GEMM (the weights are frozen) and no activation is kept for backward.
LoRA's adapters stay in bf16/fp32 on top (PEFT's `lora.Linear` keeps calling its `base_layer`).

On CUDA the GEMMs are `torch._scaled_mm` (Hopper's fp8 tensor cores, fp32 accumulation) and the quantization is
compiled into one pass; q/k/v (and gate/up) read the same input tensor, so it is quantized once for all three.
On CPU the same function emulates them: the same e4m3 casts, then the product of the dequantized values in fp32,
so every rounding the GPU path makes, the CPU path makes too (only the summation order of the GEMM differs).

Memory against NF4: 1 byte a weight plus 4 bytes a row (rowwise), against about 0.52 byte for NF4 with double
quantization: +0.48 byte a weight, 1.3 GB more for the 2.8 B decoder weights of Llama-3.2-3B.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448
SCALINGS = ("rowwise", "tensorwise")


def quantize(x: torch.Tensor, scaling: str, fold: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 tensor, fp32 scale) with x * fold ~ q * scale; scale is (rows, 1) rowwise, () tensorwise. `fold`
    multiplies x first (a weight's row scales moved onto the gradient, in the same pass)."""
    x = x.float() if fold is None else x.float() * fold
    amax = x.abs().amax(dim=-1, keepdim=True) if scaling == "rowwise" else x.abs().amax()
    scale = amax.clamp(min=1e-12) / E4M3_MAX
    return (x / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


_compiled_quantize = None


def _quantize(x: torch.Tensor, scaling: str, fold: torch.Tensor | None = None):
    """`quantize` as one fused kernel on CUDA (unfused, it costs about as much as the GEMM it feeds)."""
    global _compiled_quantize
    if not x.is_cuda:
        return quantize(x, scaling, fold)
    if _compiled_quantize is None:
        _compiled_quantize = torch.compile(quantize, dynamic=True)
    return _compiled_quantize(x, scaling, fold)


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a, scale_b, out_dtype: torch.dtype) -> torch.Tensor:
    """(a * scale_a) @ (b * scale_b): a (M, K) row-major e4m3, b (K, N) column-major e4m3, fp32 accumulation."""
    if a.is_cuda:
        return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype)
    return ((a.float() @ b.float()) * scale_a * scale_b).to(out_dtype)


class _SharedInput:
    """The last quantized activation, reused while the same tensor, unchanged, feeds the next layer (q/k/v, gate/up)."""

    def __init__(self):
        self.source, self.version, self.key, self.value = None, -1, None, None

    def get(self, x: torch.Tensor, scaling: str):
        if self.source is not None and self.source() is x and self.version == x._version and self.key == scaling:
            return self.value
        self.value = _quantize(x.reshape(-1, x.shape[-1]), scaling)
        # dropped with its source: the last layer's quantized input must not outlive the step
        self.source, self.version, self.key = weakref.ref(x, self._forget), x._version, scaling
        return self.value

    def _forget(self, _ref) -> None:
        if self.source is _ref:
            self.source, self.value = None, None


_shared = _SharedInput()


class FrozenFp8Matmul(torch.autograd.Function):
    """x @ W.T with W frozen in e4m3; gradient to x only. x (M, K) -> (M, N) in `out_dtype`."""

    @staticmethod
    def forward(ctx, x, source, weight, weight_scale, scaling, out_dtype):
        xq, x_scale = _shared.get(source, scaling)
        # the frozen weight rides on ctx, not in save_for_backward: activation-offload hooks (TRL's) would copy it
        # to the host every step (bitsandbytes keeps its 4-bit weights out of them the same way)
        ctx.weight, ctx.weight_scale = weight, weight_scale
        ctx.scaling, ctx.in_dtype = scaling, x.dtype
        return scaled_mm(xq, weight.t(), x_scale, weight_scale.reshape(1, -1), out_dtype)

    @staticmethod
    def backward(ctx, grad):
        weight, weight_scale = ctx.weight, ctx.weight_scale
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        # dX = dY @ (W * s_w): rowwise weight scales lie along the reduction, so they multiply dY before quantizing
        rowwise = ctx.scaling == "rowwise"
        gq, g_scale = _quantize(grad, ctx.scaling, weight_scale.reshape(1, -1) if rowwise else None)
        w_scale = torch.ones(1, weight.shape[1], device=grad.device) if rowwise else weight_scale.reshape(1, 1)
        column_major = weight.t().contiguous().t()  # fp8 GEMMs take their second operand column-major
        return scaled_mm(gq, column_major, g_scale, w_scale, ctx.in_dtype), None, None, None, None, None


class Fp8Linear(nn.Module):
    """A frozen `nn.Linear` whose weight lives in e4m3 (non-persistent buffers: checkpoints hold adapters only)."""

    def __init__(self, linear: nn.Linear, scaling: str = "rowwise"):
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"fp8 scaling {scaling!r}: use one of {SCALINGS}")
        self.in_features, self.out_features, self.scaling = linear.in_features, linear.out_features, scaling
        weight, scale = quantize(linear.weight.detach(), scaling)
        self.register_buffer("weight_fp8", weight, persistent=False)
        self.register_buffer("weight_scale", scale.reshape(-1), persistent=False)
        self.bias = linear.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        scale = self.weight_scale if self.scaling == "rowwise" else self.weight_scale.reshape(())
        out = FrozenFp8Matmul.apply(x.reshape(-1, x.shape[-1]), x, self.weight_fp8, scale, self.scaling, out_dtype)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out + self.bias.to(out.dtype) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 {self.scaling}"


def quantize_frozen_linears(model: nn.Module, scaling: str = "rowwise") -> int:
    """Swap every frozen `nn.Linear` of the model (PEFT's base layers included) for `Fp8Linear`, except the output
    embedding (the LM head, often tied to the input embedding). Returns how many were swapped."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    swaps = [
        (parent, child_name, child)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if type(child) is nn.Linear and child is not head and not child.weight.requires_grad
    ]
    for parent, child_name, child in swaps:
        setattr(parent, child_name, Fp8Linear(child, scaling))
    return len(swaps)
