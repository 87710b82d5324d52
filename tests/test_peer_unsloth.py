"""The peer benchmark's pieces that need no GPU and no Unsloth (which imports only with a GPU): arguments, the
skip record, the corpus subset, the packing and failure records, and the attention check, run here through
TRL's own padding-free trainer on a tiny model."""

from __future__ import annotations

import json
import types

import pytest
import torch
from datasets import Dataset

from benchmarks import peer_unsloth as peer


def test_arguments_default_to_the_issue_setting():
    args = peer.parse_args(["--model", "m", "--corpus", "c", "--out", "o.json"])
    assert (args.batches, args.max_length, args.warmup, args.steps) == ([16, 32, 64], 2048, 2, 3)
    assert args.packing_strategy == "bfd_split" and args.memory_cap_gb == 79.2
    assert peer.parse_args(["--model", "m", "--corpus", "c", "--out", "o", "--batches", "8,24"]).batches == [8, 24]
    for bad in (["--batches", "0,8"], ["--steps", "0"], ["--packing-strategy", "wrapped"]):
        with pytest.raises(SystemExit):
            peer.parse_args(["--model", "m", "--corpus", "c", "--out", "o", *bad])


def test_without_unsloth_every_row_says_why_it_was_skipped(tmp_path, capsys):
    if not peer.unavailable():
        pytest.skip("Unsloth and a GPU are here: the peer would run")
    out = tmp_path / "peer.json"
    assert peer.main(["--model", "m", "--corpus", "c", "--batches", "16,32", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["status"].startswith("skipped: ")
    assert [(r["variant"], r["batch"], r["status"]) for r in record["results"]] == [
        ("unsloth", 16, record["status"]),
        ("unsloth", 32, record["status"]),
    ]
    assert "unsloth 16 skipped: unsloth is not installed" in " ".join(capsys.readouterr().out.split())


def test_train_texts_takes_just_enough_documents():
    train = Dataset.from_dict(
        {"text": ["a" * n for n in (400, 800, 1200, 1600)], "characters": [400, 800, 1200, 1600], "title": ["t"] * 4}
    )
    assert peer.train_texts(train, 100).column_names == ["text"]
    assert len(peer.train_texts(train, 100)) == 1  # 400 characters ~ 100 tokens
    assert len(peer.train_texts(train, 300)) == 2
    assert len(peer.train_texts(train, 300, kept_per_document=50)) == 4  # truncation keeps 50 tokens a document
    assert len(peer.train_texts(train, 10**6)) == 4  # all there is


def test_packing_record_counts_what_packing_dropped(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    texts = ["The ocean has absorbed heat. " * 20, "Warmer water expands. " * 3]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    kept = [list(range(32)), list(range(lengths[1]))]  # a bfd-like packing that kept 32 tokens of the long one
    trainer = types.SimpleNamespace(
        args=types.SimpleNamespace(packing_strategy="bfd"),
        padding_free=True,
        train_dataset=Dataset.from_dict({"input_ids": kept}),
    )
    record = peer.packing_record(trainer, tokenizer, texts, max_length=32)
    assert record["tokens_in_documents"] == sum(lengths) and record["tokens_after_packing"] == 32 + lengths[1]
    assert record["tokens_dropped"] == lengths[0] - 32 > 0
    assert (record["documents"], record["documents_longer_than_max_length"], record["packed_rows"]) == (2, 1, 2)


def test_failures_become_one_line():
    assert peer.failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == "out of memory"
    assert peer.failure(RuntimeError("CUDA error: out of memory\nmore")) == "out of memory"
    assert peer.failure(ValueError("bad value\nsecond line")) == "error: ValueError: bad value"


def test_verdict_compares_with_the_mixing_control():
    assert peer.verdict(0.0, 0.01).startswith("apart")
    assert peer.verdict(1e-3, 0.01).startswith("apart")
    assert peer.verdict(5e-3, 0.01).startswith("mixed")
    assert peer.verdict(0.0, 0.0).startswith("inconclusive")


def test_call_counter_counts_module_functions_and_restores_them():
    module = types.SimpleNamespace(kernel=lambda x: x + 1, flag=None)
    original = module.kernel
    with peer.CallCounter(module, ["kernel", "flag", "absent"]) as calls:
        assert module.kernel(1) == 2 and module.kernel(2) == 3
    assert calls == {"kernel": 2, "flag": 0, "absent": 0} and module.kernel is original


def test_attention_check_through_a_padding_free_trainer(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [
        "The ocean has absorbed more than ninety percent of the excess heat. " * 12,
        "Warmer water expands, and sea level rises before any ice melts. " * 12,
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        max_length=1024,
        packing=True,
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=LlamaForCausalLM.from_pretrained(tiny_model_dir),
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_dict({"text": texts}),
    )
    module = types.SimpleNamespace(_sdpa_packed_segments=lambda *a: None)  # never called by transformers' Llama
    check = peer.attention_check(trainer, tokenizer, texts, module)
    # transformers keeps the documents of a padding-free row apart by their restarting positions
    assert check["verdict"].startswith("apart"), check
    assert check["relative_difference"] < 1e-4 < check["mixing_control_relative_difference"]
    assert check["documents_tokens"] == [min(len(ids), peer.CHECK_TOKENS) for ids in tokenizer(texts)["input_ids"]]
    assert "position_ids" in check["batch_keys"] and check["attention_path"] == []


def test_table_lists_measured_and_failed_rows():
    rows = [
        {
            "variant": "unsloth",
            "batch": 16,
            "status": "ok",
            "tokens_per_s": 13374.4,
            "median_step_s": 2.45,
            "peak_allocated_gb": 6.1,
            "peak_reserved_gb": 7.6,
            "tokens_dropped": 0,
        },
        {"variant": "unsloth", "batch": 64, "status": "out of memory"},
    ]
    lines = peer.table(rows).splitlines()
    assert lines[1].split() == ["unsloth", "16", "13374", "2.450", "6.1", "7.6", "0"]
    assert lines[2].split() == ["unsloth", "64", "out", "of", "memory"]
