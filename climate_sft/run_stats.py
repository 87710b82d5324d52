"""Stage 5: what a run cost, measured one way everywhere: the step clock, the token count, peak memory.

Training (`training_stats.json`), the batch-size search and the benchmarks all read throughput from
`StepClock`: synchronized wall-clock marks at the start of training and at every optimizer step end, with
transformers' own running count of the real (non-padding) tokens (`state.num_input_tokens_seen`, summed over
processes) at each mark. A step's time therefore includes its data loading and whatever runs between
steps. The clock's segments are saved in every checkpoint (transformers' `ExportableState`), so a resumed run
reports totals over all its segments. Imports only torch and transformers: a peer's trainer can use it too.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


def synchronize() -> None:
    """Wait for queued GPU work, so a host clock read after it measures the work (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def track_real_tokens(trainer) -> None:
    """Have transformers count the real tokens: every token of a padding-free batch (it carries no attention mask,
    and transformers' `non_padding` mode would then compare with the pad id and miss each EOS that doubles as
    padding), the attention mask's ones in padded batches."""
    trainer.args.include_num_input_tokens_seen = "all" if getattr(trainer, "padding_free", False) else "non_padding"


class StepClock(TrainerCallback, ExportableState):
    """(seconds, tokens seen) at train begin and at every optimizer step end; earlier segments of a resumed run."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []
        self.earlier: list[dict] = []  # {"steps", "seconds", "tokens"} of the runs this one resumed

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__)
        # resumed: the checkpoint's earlier segments and its own; a fresh run holds only an empty segment there
        segments = saved["attributes"]["earlier"] + [saved["attributes"]["segment"]] if saved else []
        self.earlier = [s for s in segments if s["steps"]]
        synchronize()
        self.marks = [(time.perf_counter(), state.num_input_tokens_seen)]

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    def state(self) -> dict:
        """What a checkpoint keeps of the clock (transformers saves it in trainer_state.json)."""
        return {"args": {}, "attributes": {"earlier": self.earlier, "segment": self.segment()}}

    def step_seconds(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])]

    def step_tokens(self) -> list[int]:
        return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])]

    def segment(self) -> dict:
        """This run's steps, seconds and tokens."""
        if len(self.marks) < 2:
            return {"steps": 0, "seconds": 0.0, "tokens": 0}
        return {
            "steps": len(self.marks) - 1,
            "seconds": self.marks[-1][0] - self.marks[0][0],
            "tokens": self.marks[-1][1] - self.marks[0][1],
        }

    def tokens_per_second(self, skip: int = 0) -> float | None:
        """Real tokens over wall time of this run's steps after the first `skip` (warm-up)."""
        seconds, tokens = self.step_seconds()[skip:], self.step_tokens()[skip:]
        return sum(tokens) / sum(seconds) if seconds and sum(seconds) > 0 else None

    def median_step_seconds(self, skip: int = 0) -> float | None:
        seconds = self.step_seconds()[skip:]
        return statistics.median(seconds) if seconds else None


def peak_memory() -> dict:
    """Peak GPU memory (allocated and reserved by PyTorch) of this process, or its peak RSS on CPU."""
    if torch.cuda.is_available():
        return {
            "device": torch.cuda.get_device_name(),
            "peak_gpu_memory_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "peak_gpu_memory_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 3),
        }
    return {
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
