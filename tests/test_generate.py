"""`climate-sft generate` and samples.json: base and fine-tuned answers, from held-out passages."""

from __future__ import annotations

import io
import json

import torch

from climate_sft import cli
from climate_sft.corpus import load_corpus
from climate_sft.generate import Decoding, SideBySide, held_out_prompts, interactive, write_samples
from climate_sft.merge import load_run


def _texts(corpus_dir, split) -> list[str]:
    return [" ".join(t.split()) for t in load_corpus(corpus_dir)[split]["text"]]


def test_prompts_are_cut_out_of_held_out_documents_only(tiny_run_dir, tiny_corpus_dir):
    passages = held_out_prompts(tiny_run_dir, 3, prompt_words=12, reference_words=8)
    test_texts = _texts(tiny_corpus_dir, "test")
    assert len(passages) == 3
    for _, prompt, follows in passages:
        assert any(f"{prompt} {follows}" in text for text in test_texts)
        assert len(prompt.split()) == 12 and len(follows.split()) == 8
    # spread along the document, not the same opening three times
    assert len({prompt for _, prompt, _ in passages}) == 3


def test_samples_give_the_plain_base_model_and_the_adapter_answers(tiny_run_dir):
    path = write_samples(tiny_run_dir, count=2, decoding=Decoding(max_new_tokens=8))
    record = json.loads(path.read_text())
    assert record["split"] == "test" and len(record["samples"]) == 2
    sample = record["samples"][0]

    # the base answer is what the base model alone says, without PEFT in the way
    _, model, tokenizer = load_run(tiny_run_dir)
    inputs = tokenizer(sample["prompt"], return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert sample["base"] == tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    # the adapter changes the greedy answers (it moves the logits a lot: tests/test_merge.py)
    assert any(s["base"] != s["fine_tuned"] for s in record["samples"])


def test_cli_streams_greedy_and_sampled_answers_of_both(tiny_run_dir, capsys):
    cli.main(["generate", str(tiny_run_dir), "--prompt", "The ocean", "--sample", "--max-new-tokens", "5"])
    out = capsys.readouterr().out
    for label in ("base (greedy)", "fine-tuned (greedy)", "base (sampled)", "fine-tuned (sampled)"):
        assert f"--- {label}: The ocean" in out


def test_sampled_answers_use_the_same_seed_for_both(tiny_run_dir):
    pair = SideBySide(tiny_run_dir)
    decoding = Decoding(max_new_tokens=6, sample=True, seed=3)
    first = pair.answer("Sea level", fine_tuned=True, sampled=True, decoding=decoding)
    torch.manual_seed(99)  # no effect: every answer seeds itself
    assert pair.answer("Sea level", fine_tuned=True, sampled=True, decoding=decoding) == first

    lines = io.StringIO("Warm water\n\nnever read\n")
    interactive(pair, Decoding(max_new_tokens=3), lines)
    assert lines.readline() == "never read\n", "an empty line ends the session"
