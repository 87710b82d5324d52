"""The random-init architectures have the published shapes: parameter counts on the meta device, no weights made."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from scripts.random_model import random_model_config

# Parameter counts of the released checkpoints (safetensors metadata on the hub model pages).
PUBLISHED = {"llama-3.2-3b": 3_212_749_824, "llama-3.1-8b": 8_030_261_248}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_architecture_has_the_published_parameter_count(arch, tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    config = random_model_config(arch, tokenizer)
    with torch.device("meta"):  # shapes only: 8B parameters would take 32 GB here
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[arch]
    assert config.vocab_size == 128256 and config.eos_token_id == tokenizer.eos_token_id


def test_an_architecture_without_a_vocabulary_takes_the_tokenizers(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert random_model_config("tiny", tokenizer).vocab_size == len(tokenizer)
