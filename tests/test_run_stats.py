"""The step clock on a real tiny trainer (TRL's SFTTrainer, a random Llama, CPU): one mark per step, every real
token counted once for padded and padding-free batches, the warm-up arithmetic; and the control: transformers'
other counting mode miscounts each kind of batch."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from climate_sft.run_stats import StepClock, track_real_tokens

LENGTHS = [5, 9, 3, 12, 7, 4, 10, 6, 8, 11, 13, 2]  # tokens of each document, EOS included


def trainer_for(tmp_path, tokenizer_dir, packing: bool) -> SFTTrainer:
    """One epoch over LENGTHS-long documents that end with EOS = pad (as SmolLM2's tokenizer has it); padded
    batches of 2 documents, or rows of up to 16 packed tokens flattened padding-free."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos
    docs = [[eos + 1 + (i + j) % 29 for j in range(n - 1)] + [eos] for i, n in enumerate(LENGTHS)]
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            pad_token_id=eos,
        )
    )
    args = SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        num_train_epochs=1,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_length=16,
        packing=packing,
        packing_strategy="bfd",
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": docs}), processing_class=tokenizer
    )
    assert trainer.padding_free == packing
    return trainer


def timed(trainer: SFTTrainer) -> StepClock:
    clock = StepClock()
    trainer.add_callback(clock)
    trainer.train()
    return clock


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "padding-free"])
def test_clock_marks_every_step_and_counts_every_real_token_once(tmp_path, tiny_tokenizer_dir, packing):
    trainer = trainer_for(tmp_path, tiny_tokenizer_dir, packing)
    track_real_tokens(trainer)
    clock = timed(trainer)
    assert len(clock.marks) == trainer.state.global_step + 1 >= 4
    assert all(s > 0 for s in clock.step_seconds())
    assert sum(clock.step_tokens()) == sum(LENGTHS)  # one epoch: every document once, padding left out


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "padding-free"])
def test_transformers_other_counting_mode_miscounts(tmp_path, tiny_tokenizer_dir, packing):
    trainer = trainer_for(tmp_path, tiny_tokenizer_dir, packing)
    trainer.args.include_num_input_tokens_seen = "non_padding" if packing else "all"  # the mode not chosen
    total = sum(timed(trainer).step_tokens())
    if packing:  # no attention mask: it counts input_ids != pad, and misses every document's EOS
        assert total == sum(LENGTHS) - len(LENGTHS)
    else:  # it counts the padding too
        assert total > sum(LENGTHS)


def test_warmup_is_left_out_and_each_train_call_starts_over(tmp_path, tiny_tokenizer_dir):
    trainer = trainer_for(tmp_path, tiny_tokenizer_dir, packing=False)
    track_real_tokens(trainer)
    clock = timed(trainer)
    seconds, tokens = clock.step_seconds(), clock.step_tokens()
    assert clock.tokens_per_second(skip=1) == pytest.approx(sum(tokens[1:]) / sum(seconds[1:]))
    assert clock.tokens_per_second() == pytest.approx(sum(tokens) / sum(seconds))
    assert clock.tokens_per_second(skip=len(seconds)) is None  # no step left to time
    trainer.args.max_steps = 2  # a second run, of 2 steps: the clock starts over
    trainer.train()
    assert len(clock.marks) == 3
