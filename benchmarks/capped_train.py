"""The training entry point under a GPU memory cap: an H100's 80 GB budget kept on a bigger card (an H200).

    accelerate launch --config_file CONFIG -m benchmarks.capped_train --memory-cap-gib 79.2 --config RECIPE [...]

Each process caps its own GPU (LOCAL_RANK under accelerate launch) with set_per_process_memory_fraction before
anything is allocated, then runs `climate_sft.train` unchanged: an out-of-memory error here is one on an H100.
"""

from __future__ import annotations

import os
import sys

import torch

from climate_sft import train


def main(argv: list[str]) -> None:
    if argv[:1] != ["--memory-cap-gib"] or len(argv) < 2:
        sys.exit("usage: python -m benchmarks.capped_train --memory-cap-gib GIB --config RECIPE [--key value ...]")
    gib, rest = float(argv[1]), argv[2:]
    device = int(os.environ.get("LOCAL_RANK", "0"))
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total), device)
    print(f"memory cap: {gib} GiB of {total / 2**30:.1f} GiB on cuda:{device}", flush=True)
    train.main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
