"""The step clock on a real (tiny, random) Trainer: step count, real-token count for padded and padding-free
batches, and the warm-up arithmetic; plus why transformers' own token counter is not used."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from climate_sft.run_stats import StepClock, real_tokens

# distinct, so a miscount cannot cancel out; 12 documents = 3 optimizer steps of 2 x 2 per epoch
LENGTHS = [5, 9, 3, 12, 7, 4, 10, 6, 8, 11, 13, 2]


def documents(eos: int):
    """Every document ends with EOS, as TRL's do; no other token equals it."""
    return [{"input_ids": [eos + 1 + (i + j) % 29 for j in range(n - 1)] + [eos]} for i, n in enumerate(LENGTHS)]


class RecordingCollator:
    """Builds padded or padding-free batches and records how many document tokens each one holds."""

    def __init__(self, padding_free: bool, pad: int):
        self.padding_free, self.pad, self.tokens = padding_free, pad, []

    def __call__(self, examples):
        ids = [e["input_ids"] for e in examples]
        self.tokens.append(sum(map(len, ids)))
        if self.padding_free:  # one flattened row, positions restarting at each document
            flat = torch.tensor([t for x in ids for t in x])
            labels = flat.clone()
            labels[[sum(map(len, ids[:k])) for k in range(len(ids))]] = -100
            positions = torch.cat([torch.arange(len(x)) for x in ids])
            return {"input_ids": flat[None], "labels": labels[None], "position_ids": positions[None]}
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [self.pad] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": input_ids.masked_fill(mask == 0, -100)}


def train(tmp_path, tokenizer_dir, padding_free: bool, steps: int = 3):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    pad = tokenizer.pad_token_id
    assert pad == tokenizer.eos_token_id  # pad = EOS, as in SmolLM2's tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, pad_token_id=pad)
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, max_steps=steps, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, learning_rate=1e-3, report_to="none", save_strategy="no",
        logging_steps=1, dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
        include_num_input_tokens_seen="non_padding", seed=0,
    )
    collator = RecordingCollator(padding_free, pad)
    trainer = Trainer(model=LlamaForCausalLM(config), args=args, train_dataset=documents(pad), data_collator=collator,
                      processing_class=tokenizer)
    clock = StepClock().attach(trainer)
    trainer.train()
    return trainer, clock, collator


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
def test_clock_counts_every_real_token_of_every_step(tmp_path, tiny_tokenizer_dir, padding_free):
    trainer, clock, collator = train(tmp_path, tiny_tokenizer_dir, padding_free)
    assert len(clock.marks) == 4 and len(clock.step_seconds()) == 3
    assert all(s > 0 for s in clock.step_seconds())
    # two micro-batches per optimizer step (accumulation 2); the loader may have collated one batch ahead
    micro = collator.tokens[:6]
    assert clock.step_tokens() == [micro[0] + micro[1], micro[2] + micro[3], micro[4] + micro[5]]
    seen = trainer.state.num_input_tokens_seen  # transformers' "non_padding" count over the same micro-batches
    if padding_free:
        # no mask: it counts input_ids != pad, so each document's EOS (= pad) goes missing: 2 documents a batch
        assert seen == sum(micro) - 2 * len(micro)
    else:
        assert seen == sum(micro)


def test_warmup_is_left_out_and_each_train_call_starts_over(tmp_path, tiny_tokenizer_dir):
    trainer, clock, _ = train(tmp_path, tiny_tokenizer_dir, padding_free=True)
    seconds, tokens = clock.step_seconds(), clock.step_tokens()
    assert clock.tokens_per_second(skip=1) == pytest.approx(sum(tokens[1:]) / sum(seconds[1:]))
    assert clock.tokens_per_second() == pytest.approx(sum(tokens) / sum(seconds))
    with pytest.raises(ValueError, match="no step left"):
        clock.tokens_per_second(skip=3)
    trainer.args.max_steps = 5  # a second run, of 5 steps: the clock starts over
    trainer.train()
    assert len(clock.marks) == 6 and len(clock.step_tokens()) == 5


def test_real_tokens_of_padded_and_padding_free_batches():
    padded = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0, 0], [1] * 4])}
    assert int(real_tokens(padded)) == 6
    assert real_tokens({"input_ids": torch.ones(1, 9, dtype=torch.long)}) == 9
