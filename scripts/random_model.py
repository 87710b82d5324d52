"""Randomly initialised Llama checkpoints, for tests (tiny) and for GPU benchmarks (the exact Llama-3.2-3B and
Llama-3.1-8B shapes; the 8B one is the full fine-tune that does not fit one 80 GB GPU).

Weights do not change memory or speed, so a random model of the real architecture measures both honestly
where the real weights cannot be downloaded. Its quality numbers mean nothing.

    python -m scripts.random_model OUT_DIR --arch llama-3.2-3b --tokenizer TOKENIZER_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

ARCHITECTURES = {
    # meta-llama/Llama-3.2-3B config.json
    "llama-3.2-3b": dict(
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
    ),
    # meta-llama/Llama-3.1-8B config.json. A full fine-tune (fp32 weights and gradients, two AdamW states) needs
    # 16 bytes a parameter, 128 GB: more than one 80 GB GPU, 64 GB a GPU when FSDP or ZeRO-3 shards it over two.
    "llama-3.1-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=False,
    ),
    # GPU tests: FlashAttention-sized heads (128) in a model that builds in a second
    "small": dict(
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=128,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
}


def random_model_config(arch: str, tokenizer):
    """The LlamaConfig of `arch`, with the tokenizer's special tokens (and its vocabulary where `arch` has none)."""
    from transformers import LlamaConfig

    shape = dict(ARCHITECTURES[arch])
    shape.setdefault("vocab_size", len(tokenizer))
    return LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def save_random_model(
    out_dir: str | Path, arch: str, tokenizer_dir: str | Path, seed: int = 0, dtype: str = "bfloat16"
) -> Path:
    """Save a random-init LlamaForCausalLM of `arch` with the tokenizer from `tokenizer_dir` beside it."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = random_model_config(arch, tokenizer)
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="llama-3.2-3b")
    parser.add_argument("--tokenizer", required=True, help="folder with a saved tokenizer")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    print(save_random_model(args.out_dir, args.arch, args.tokenizer, dtype=args.dtype))


if __name__ == "__main__":
    main()
