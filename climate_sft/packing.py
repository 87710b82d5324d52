"""Stage 3: corpus text -> packed token sequences, and the attention that keeps packed documents apart.

Packing itself is TRL's (`packing=True`; this project defaults to `bfd_split`, which splits documents longer
than `max_length` instead of dropping their tail). Two things are added here:

* `packing_stats`: what packing keeps and drops, for `--dry-run` and `training_stats.json`.
* `attn_implementation: varlen`: an attention function for TRL's padding-free batches. TRL flattens a packed
  batch into one row and passes the document boundaries as `cu_seq_lens_q/k`. transformers' sdpa and eager
  keep documents apart there only by building a dense block mask over the whole flattened batch, so attention
  costs the square of the batch's token count. `varlen` hands the boundaries to FlashAttention's variable
  length kernel (`torch.nn.attention.varlen.varlen_attn`, PyTorch >= 2.10 on CUDA): each document attends to
  itself only, at fused-kernel speed. On CPU it runs SDPA document by document (same result, for tests).
"""

from __future__ import annotations

import importlib
import logging

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

VARLEN = "varlen"
logger = logging.getLogger(__name__)


def _boundaries_from_positions(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Document starts where position ids restart at 0, as cumulative lengths (one flattened row only)."""
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    starts = torch.nonzero(position_ids[0] == 0).flatten()
    if starts.numel() <= 1:
        return None
    length = torch.tensor([position_ids.shape[1]], device=starts.device)
    return torch.cat([starts, length]).to(torch.int32)


def _causal_per_document(q, k, v, cu_seq_lens, scaling):
    """Reference path (CPU): plain causal SDPA on each document. Tensors are (heads, tokens, dim)."""
    bounds = cu_seq_lens.tolist()
    outputs = [
        torch.nn.functional.scaled_dot_product_attention(q[:, a:b], k[:, a:b], v[:, a:b], is_causal=True, scale=scaling)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outputs, dim=1)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention signature: query (batch, heads, tokens, dim) -> output (batch, tokens, heads, dim)."""
    if cu_seq_lens_q is None and attention_mask is None and query.shape[2] == key.shape[2]:
        cu_seq_lens_q = cu_seq_lens_k = _boundaries_from_positions(kwargs.get("position_ids"))
    if cu_seq_lens_q is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        # Not a packed training batch (padding, generation with a cache): plain SDPA with transformers' mask
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if dropout:
        raise ValueError("attn_implementation 'varlen' does not support attention dropout; set it to 0")
    groups = getattr(module, "num_key_value_groups", 1)
    if query.is_cuda:
        cu_q = cu_seq_lens_q.to(query.device, torch.int32)
        cu_k = cu_seq_lens_k.to(query.device, torch.int32)
        max_q = int(max_length_q) if max_length_q is not None else int(cu_q.diff().max())
        max_k = int(max_length_k) if max_length_k is not None else int(cu_k.diff().max())
        out = _flash_varlen(query, key, value, groups, cu_q, cu_k, max_q, max_k, scaling)
        return out.unsqueeze(0), None
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = _causal_per_document(query[0], key[0], value[0], cu_seq_lens_q, scaling)
    return out.transpose(0, 1).unsqueeze(0), None


_native_gqa = True  # FlashAttention reads grouped key/value heads itself; set False if a build refuses


def _flash_varlen(query, key, value, groups, cu_q, cu_k, max_q, max_k, scaling):
    """FlashAttention over cumulative lengths; tensors become (tokens, heads, dim)."""
    global _native_gqa
    from torch.nn.attention.varlen import varlen_attn

    q = query[0].transpose(0, 1)
    if _native_gqa or groups == 1:
        try:
            k, v = key[0].transpose(0, 1), value[0].transpose(0, 1)
            return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, scale=scaling, window_size=(-1, 0))
        except torch.OutOfMemoryError:
            raise  # a RuntimeError too, but says nothing about grouped heads (the batch-size search expects it)
        except RuntimeError:
            if groups == 1:
                raise
            _native_gqa = False  # repeating the key/value heads costs memory traffic, not correctness
    k, v = (repeat_kv(t, groups)[0].transpose(0, 1) for t in (key, value))
    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, scale=scaling, window_size=(-1, 0))


def varlen_kernel_available() -> bool:
    """torch provides `torch.nn.attention.varlen.varlen_attn` (PyTorch 2.10 and newer)."""
    try:
        return hasattr(importlib.import_module("torch.nn.attention.varlen"), "varlen_attn")
    except ImportError:
        return False


# FlashAttention builds torch can route its flash kernels (varlen's included) through, in the order tried: FA3 is
# Hopper's (it needs `flash_attn_interface`, which PyPI does not carry), FA4 the `flash-attn-4` package.
FLASH_ATTENTION_ORDER = {"FA3": ("FA3", "FA4"), "FA4": ("FA4",)}


def activate_flash_attention(wanted: str | None) -> str | None:
    """Activate the first build of `wanted`'s order that loads on this machine; returns its name, or None (torch's
    built-in FlashAttention) after one notice saying why each was refused."""
    if not wanted:
        return None
    attention = torch.nn.attention
    if not torch.cuda.is_available():
        reasons = ["no CUDA device (the builds are CUDA kernels)"]
    elif not hasattr(attention, "activate_flash_attention_impl"):
        reasons = [f"torch {torch.__version__} cannot swap FlashAttention builds (PyTorch 2.11 or newer can)"]
    else:
        reasons, listed = [], attention.list_flash_attention_impls()
        for impl in FLASH_ATTENTION_ORDER[wanted]:
            if impl not in listed:
                reasons.append(f"{impl}: not offered by torch {torch.__version__}")
                continue
            try:
                attention.activate_flash_attention_impl(impl)
                return impl
            except Exception as error:  # a missing package (ImportError) or a card it refuses (RuntimeError)
                reasons.append(f"{impl}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    logger.warning("attention: torch's built-in FlashAttention instead of %s (%s)", wanted, "; ".join(reasons))
    return None


def varlen_unsuitable(config) -> str | None:
    """Why `varlen` would not compute what this model's attention computes, or could not run (None: it can).
    On CPU it needs no kernel: it runs SDPA document by document."""
    layer_types = getattr(config, "layer_types", None) or []
    if "sliding_attention" in layer_types or (getattr(config, "sliding_window", None) and not layer_types):
        return f"{config.model_type} uses sliding-window attention, which varlen does not apply"
    if getattr(config, "attn_logit_softcapping", None):
        return f"{config.model_type} soft-caps attention logits, which varlen does not apply"
    if torch.cuda.is_available() and not varlen_kernel_available():
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn (PyTorch 2.10 or newer has)"
    return None


def exact_fallback(config) -> str:
    """The attention that computes what the model does on packed rows where varlen cannot: both keep documents
    apart with transformers' mask from the position ids; sdpa cannot soft-cap (transformers refuses it)."""
    return "eager" if getattr(config, "attn_logit_softcapping", None) else "sdpa"


def varlen_mask(*args, attention_mask: torch.Tensor | None = None, **kwargs):
    """No mask for padding-free batches (boundaries travel as cu_seq_lens); sdpa's mask when there is padding."""
    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_varlen_attention() -> None:
    """Make `attn_implementation="varlen"` known to transformers (idempotent)."""
    AttentionInterface.register(VARLEN, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, varlen_mask)


def encode_documents(texts: list[str], tokenizer) -> list[list[int]]:
    """Token ids per document, with the EOS that TRL appends to every language-modeling example."""
    eos = tokenizer.eos_token or ""
    return tokenizer([t if t.endswith(eos) else t + eos for t in texts], add_special_tokens=False)["input_ids"]


def tokenize_documents(dataset, tokenizer, text_field: str = "text"):
    """`encode_documents` over a dataset's text column."""
    return dataset.map(
        lambda batch: {"input_ids": encode_documents(batch[text_field], tokenizer)},
        batched=True,
        remove_columns=dataset.column_names,
    )


def split_token_stats(corpus, splits, tokenizer, args) -> dict[str, dict]:
    """`packing_stats` of each named split under the training arguments' packing settings."""
    return {
        split: packing_stats(
            tokenize_documents(corpus[split], tokenizer),
            args.max_length,
            args.packing_strategy,
            args.per_device_train_batch_size,
        )
        for split in splits
    }


def packing_stats(tokenized, max_length: int, strategy: str, batch_size: int) -> dict:
    """Documents, tokens before and after TRL's packing, and packed sequences, for one split."""
    from trl.data_utils import pack_dataset

    lengths = [len(ids) for ids in tokenized["input_ids"]]
    packed = pack_dataset(tokenized, max_length, strategy=strategy)
    kept = sum(len(ids) for ids in packed["input_ids"])
    total = sum(lengths)
    return {
        "documents": len(lengths),
        "tokens": total,
        "tokens_kept": kept,
        "tokens_dropped": total - kept,
        "documents_longer_than_max_length": sum(n > max_length for n in lengths),
        "packed_sequences": len(packed),
        "fill": round(kept / (len(packed) * max_length), 4) if len(packed) else 0.0,
        "steps_per_epoch_per_device": -(-len(packed) // batch_size),
    }
