"""Shared fixtures. Helper functions live in tests/helpers.py (importable as `helpers`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import PROSE, prose_pages, recipe_maker, write_pdf

# Nothing may reach a model or dataset hub from the tests, here or in CI.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def pdf_dir(tmp_path: Path) -> Path:
    """Three good PDFs in a nested folder."""
    root = tmp_path / "pdfs"
    (root / "sub").mkdir(parents=True)
    for i, sub in enumerate(("", "", "sub")):
        pages = prose_pages(2, header=f"Report {i}")
        pages[0].insert(0, f"Document number {i} on ocean heat")
        write_pdf(root / sub / f"doc{i}.pdf", pages)
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE trained in a second on climate prose: real tokenization, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([PROSE] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from scripts.random_model import save_random_model

    return save_random_model(tmp_path_factory.mktemp("tiny_model"), "tiny", tiny_tokenizer_dir, dtype="float32")


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    """Six short documents of varied length, built through the real extraction path."""
    from climate_sft.corpus import build_corpus

    root = tmp_path_factory.mktemp("tiny_pdfs")
    for i in range(6):
        pages = prose_pages(1 + i % 3, header=f"Series {i}")
        pages[0].insert(0, f"Report {i}: heat, ice and water")
        write_pdf(root / f"doc{i}.pdf", pages)
    out = tmp_path_factory.mktemp("tiny_corpus")
    build_corpus(root, out, ratios=(0.6, 0.2, 0.2), workers=1)
    return out


@pytest.fixture(scope="session")
def synthetic_corpus_dir(tmp_path_factory) -> Path:
    """A corpus written straight from text (no PDFs, so no pymupdf: the GPU machine has none)."""
    from benchmarks.bench_corpus import synthetic_documents, write_synthetic_corpus

    out = tmp_path_factory.mktemp("synthetic_corpus")
    write_synthetic_corpus(out, synthetic_documents(8, seed=1, min_chars=800, max_chars=4000), held_out=1)
    return out


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir, tiny_corpus_dir):
    return recipe_maker(tmp_path, tiny_model_dir, tiny_corpus_dir)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_model_dir, tiny_corpus_dir) -> Path:
    """A finished LoRA run of the tiny model (a few steps at a high learning rate, so the adapter matters), whose
    base is recorded by a hub id: for merge, generate and the model card."""
    from climate_sft import train

    root = tmp_path_factory.mktemp("tiny_run")
    recipe = recipe_maker(root, tiny_model_dir, tiny_corpus_dir)(
        base_model_id="example-org/tiny-llama", learning_rate=1e-2, max_steps=4
    )
    train.run(str(recipe), [])
    return root / "run"
