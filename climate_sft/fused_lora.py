"""LoRA added inside the second adapter GEMM (`fused_lora: true`).

PEFT's `lora.Linear` computes `base(x) + lora_B(lora_A(dropout(x))) * scaling`: besides the two small GEMMs, one
kernel scales the (tokens x out_features) product and another adds it to the base output, and backward scales the
gradient once more. Here `x @ A.T` is followed by one `addmm_` into the base output's own buffer,
`out += scaling * (x A^T) B^T`: the scale rides in the GEMM's alpha and the add in its beta = 1 epilogue (as
Unsloth's `matmul_lora` does), so two full-width element-wise passes leave the forward and one the backward.
Same mathematics: PEFT's adapters, weights and state dict are untouched; only the forward of each layer changes.
Layers this cannot express exactly (dropout, DoRA, several active adapters, merged weights) keep PEFT's forward.
"""

from __future__ import annotations

import types

import torch
from torch import nn


def fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """PEFT `lora.Linear.forward`, with the adapter's product accumulated in place into the base output."""
    out = self.base_layer(x, *args, **kwargs)
    if self.disable_adapters:  # PEFT's `with model.disable_adapter():` (the base model's scores)
        return out
    adapter = self.active_adapters[0]
    lora_a = self.lora_A[adapter]
    low_rank = lora_a(self._cast_input_dtype(x, lora_a.weight.dtype))
    b = self.lora_B[adapter].weight
    flat = out.view(-1, out.shape[-1])  # a view: the addmm writes the base output's buffer
    flat.addmm_(
        low_rank.reshape(-1, low_rank.shape[-1]).to(out.dtype), b.t().to(out.dtype), alpha=self.scaling[adapter]
    )
    return out


def fusable(layer) -> bool:
    """Whether `fused_lora_forward` computes exactly what PEFT computes for this layer."""
    adapters = layer.active_adapters
    return (
        len(adapters) == 1
        and adapters[0] in layer.lora_A
        and isinstance(layer.lora_A[adapters[0]], nn.Linear)
        and not layer.merged
        and isinstance(layer.lora_dropout[adapters[0]], nn.Identity)
        and adapters[0] not in layer.lora_variant  # DoRA and the other variants change the product
        and not layer.lora_bias.get(adapters[0], False)
    )


def fuse_lora(model: nn.Module) -> int:
    """Give every fusable PEFT LoRA linear layer (over a plain, 4-bit, 8-bit or fp8 base) the fused forward.
    Returns how many."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and fusable(m)]
    for layer in layers:
        layer.forward = types.MethodType(fused_lora_forward, layer)
    return len(layers)
