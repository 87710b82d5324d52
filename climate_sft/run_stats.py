"""One step clock for every trainer and benchmark: wall time and real tokens of each optimizer step.

    clock = StepClock().attach(trainer)
    trainer.train()
    clock.tokens_per_second(skip=2)     # real tokens/s of the steps after the first two

Real tokens are the tokens a micro-batch trains on, padding excluded: the ones of its `attention_mask` when it
has one (padded rows), else every position of its `input_ids` (a padding-free batch: one flattened row with
no mask, which TRL's and Unsloth's collators build without padding unless `pad_to_multiple_of` is set).

Why not transformers' own `include_num_input_tokens_seen` (5.17 and 5.24, `Trainer._track_num_input_tokens`,
the same code in both): its "non_padding" mode counts a mask-less batch as `input_ids != pad_token_id`, which
also drops every real token equal to the pad token. With pad = EOS (SmolLM2's tokenizer, and TRL's fallback
when a tokenizer has none) that is one token per packed document, since TRL ends every document with EOS.
Its "all" mode counts padding in padded batches. Neither is right for both kinds of batch; this count is.

Imports only torch, transformers and the standard library, so that a process running another TRL (the Unsloth
peer in benchmarks/) can use the same clock.
"""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback


def synchronize() -> None:
    """Wait for queued GPU work, so a host clock read after it measures the work (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def real_tokens(inputs) -> torch.Tensor | int:
    """Tokens a micro-batch trains on (see the module docstring); a device tensor for a padded batch, so that
    counting never waits for the GPU."""
    mask = inputs.get("attention_mask")
    return mask.sum() if mask is not None else inputs["input_ids"].numel()


class StepClock(TrainerCallback):
    """Synchronized wall-clock marks at optimizer step ends, each with the real tokens trained on so far.

    `marks[0]` is taken when the first step begins, `marks[i]` when step i ends, so step i's time covers all
    of it: data loading, forward and backward of every micro-batch, the optimizer, logging. One clock per
    `train()` call: the marks start over when training begins.
    """

    def __init__(self):
        self.marks: list[tuple[float, int]] = []
        self._pending: torch.Tensor | int = 0  # real tokens since the last mark

    def attach(self, trainer) -> StepClock:
        """Count the real tokens of every micro-batch `trainer` trains on, and time its steps."""
        training_step = trainer.training_step

        def counted_training_step(model, inputs, *args, **kwargs):
            self._pending = self._pending + real_tokens(inputs)
            return training_step(model, inputs, *args, **kwargs)

        trainer.training_step = counted_training_step
        trainer.add_callback(self)
        return self

    def _mark(self) -> None:
        synchronize()
        total = (self.marks[-1][1] if self.marks else 0) + int(self._pending)
        self.marks.append((time.perf_counter(), total))
        self._pending = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks, self._pending = [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.marks:
            self._mark()

    def on_step_end(self, args, state, control, **kwargs):
        self._mark()

    def step_seconds(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])]

    def step_tokens(self) -> list[int]:
        return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])]

    def tokens_per_second(self, skip: int = 0) -> float:
        """Real tokens of the steps after the first `skip` (warm-up) over their wall time."""
        seconds, tokens = self.step_seconds()[skip:], self.step_tokens()[skip:]
        if not seconds:
            raise ValueError(f"no step left to time: {len(self.marks) - 1} step(s) recorded, {skip} skipped")
        return sum(tokens) / sum(seconds)
