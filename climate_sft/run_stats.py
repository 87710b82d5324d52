"""One step clock for every trainer and benchmark: wall time and real tokens of each optimizer step.

    track_real_tokens(trainer)
    clock = StepClock()
    trainer.add_callback(clock)
    trainer.train()
    clock.tokens_per_second(skip=2)     # real tokens/s of the steps after the first two

The clock marks (seconds, tokens seen) when training begins and at every optimizer step end, each read after the
device is synchronized, so a step's time covers all of it: data loading, forward and backward of every
micro-batch, the optimizer, logging.

The token count is transformers' own (`include_num_input_tokens_seen`, read as `state.num_input_tokens_seen`;
`Trainer._track_num_input_tokens`, the same code in 5.17 and 5.24), in the mode that counts the real tokens of
the trainer's batches: "all" for padding-free batches (one flattened row with no attention mask, which TRL's
and Unsloth's collators build without padding unless `pad_to_multiple_of` is set), "non_padding" (the attention
mask's ones) for padded batches. "non_padding" cannot count a padding-free batch: without a mask it counts
`input_ids != pad_token_id`, which also drops every real token equal to the pad token, that is each document's
EOS where pad = EOS (SmolLM2's tokenizer, and TRL's fallback for a tokenizer without one), since TRL ends every
document with EOS.

Imports only torch, transformers and the standard library, so that a process running another TRL (the Unsloth
peer in benchmarks/) uses the same clock.
"""

from __future__ import annotations

import time
from itertools import pairwise

import torch
from transformers import TrainerCallback


def synchronize() -> None:
    """Wait for queued GPU work, so a host clock read after it measures the work (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def track_real_tokens(trainer) -> None:
    """Have `trainer` count the real tokens of its batches (see the module docstring); TRL's `SFTTrainer` (and
    Unsloth's) says whether they are padding-free in `trainer.padding_free`."""
    trainer.args.include_num_input_tokens_seen = "all" if getattr(trainer, "padding_free", False) else "non_padding"


class StepClock(TrainerCallback):
    """(seconds, tokens seen) when training begins and at every optimizer step end, device synchronized."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    def _mark(self, state) -> None:
        synchronize()
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = []  # one clock per train() call
        self._mark(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._mark(state)

    def step_seconds(self) -> list[float]:
        return [b[0] - a[0] for a, b in pairwise(self.marks)]

    def step_tokens(self) -> list[int]:
        return [b[1] - a[1] for a, b in pairwise(self.marks)]

    def tokens_per_second(self, skip: int = 0) -> float:
        """Real tokens of the steps after the first `skip` (warm-up) over their wall time."""
        seconds, tokens = self.step_seconds()[skip:], self.step_tokens()[skip:]
        if not seconds:
            raise ValueError(f"no step left to time: {len(self.marks) - 1} step(s) recorded, {skip} skipped")
        return sum(tokens) / sum(seconds)
