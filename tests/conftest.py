"""Shared fixtures: PDFs built on the fly, so every bad-input case is a real file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing may reach a model or dataset hub from the tests, here or in CI.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROSE = (
    "The ocean has absorbed more than ninety percent of the excess heat trapped by greenhouse gases "
    "since the nineteen seventies. Warmer water expands, and this thermal expansion raises sea level "
    "even before any ice melts on land. "
)


def write_pdf(path: Path, pages: list[list[str]], title: str = "", **save_kwargs) -> Path:
    """A PDF whose page i shows the lines pages[i], one line per 14 pt, in Helvetica."""
    import pymupdf

    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page()
        for n, line in enumerate(lines):
            page.insert_text((72, 72 + 14 * n), line, fontname="helv", fontsize=11)
    if title:
        doc.set_metadata({"title": title})
    doc.save(path, **save_kwargs)
    return path


def prose_pages(n_pages: int, header: str = "Climate Primer Series", words_per_line: int = 12) -> list[list[str]]:
    """Pages of prose with a running header and a page-number footer, like a real report."""
    words = (PROSE * 6).split()
    lines = [" ".join(words[i : i + words_per_line]) for i in range(0, len(words), words_per_line)]
    return [[header, "", *lines, "", str(p + 1)] for p in range(n_pages)]


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


def write_recipe(path: Path, **values) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


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
    from climate_sft.random_model import save_random_model

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
    from datasets import Dataset, DatasetDict

    from climate_sft.benchmarks.bench_corpus import synthetic_documents
    from climate_sft.corpus import document_features

    docs = synthetic_documents(8, seed=1, min_chars=800, max_chars=4000)
    out = tmp_path_factory.mktemp("synthetic_corpus")
    DatasetDict(
        {split: Dataset.from_list(part, features=document_features())
         for split, part in (("train", docs[:6]), ("validation", docs[6:7]), ("test", docs[7:]))}
    ).save_to_disk(str(out / "dataset"))
    return out


def recipe_maker(tmp_path: Path, model_dir: Path, corpus_dir: Path):
    """A function writing a recipe for a few CPU steps of a tiny model; keyword arguments override keys."""

    def make(**overrides) -> Path:
        values = dict(
            model_name_or_path=str(model_dir),
            dtype="float32",
            attn_implementation="sdpa",
            use_peft=True,
            lora_r=4,
            lora_alpha=8,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            corpus_dir=str(corpus_dir),
            max_length=64,
            packing=True,
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=True,
            optim="adamw_torch",
            learning_rate=1e-3,
            max_steps=3,
            per_device_train_batch_size=2,
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            output_dir=str(tmp_path / "run"),
            dataloader_num_workers=0,
            seed=0,
        )
        values.update(overrides)
        return write_recipe(tmp_path / "recipe.yaml", **values)

    return make


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir, tiny_corpus_dir):
    return recipe_maker(tmp_path, tiny_model_dir, tiny_corpus_dir)
