"""Launch like `trl sft`: `climate-sft train` and `find-batch-size` start `accelerate launch` themselves.

    climate-sft train --config RECIPE [--accelerate_config NAME_OR_PATH] [--num_processes N] [--key value ...]

Without `--accelerate_config` the visible GPUs choose (CUDA_VISIBLE_DEVICES is respected): none -> cpu.yaml,
one -> single_h100.yaml, several -> multi_gpu.yaml with one process per GPU. A config is a shipped name
(`climate-sft ls`) or a path. Already inside `accelerate launch` (or torchrun), the entry point runs in-process.

Two guarantees live here. A failing child's own one-line error is all the user sees: accelerate's launcher is run
through this module (`python -m climate_sft.launch ...`), which turns its `CalledProcessError` or torchrun's
`ChildFailedError` into the child's exit status instead of a second traceback. And a killed command takes its
children with it: every process of a launch asks the kernel to signal it when its parent dies
(`die_with_parent`), so nothing keeps writing a run folder after `kill -9` of `climate-sft train`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from climate_sft import UserError, error_boundary

# `accelerate launch` sets this in every process it starts, whatever the config; torchrun sets LOCAL_RANK.
_LAUNCHED_MARKERS = ("ACCELERATE_MIXED_PRECISION", "LOCAL_RANK")


def already_launched() -> bool:
    return any(name in os.environ for name in _LAUNCHED_MARKERS)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_config(gpus: int) -> str:
    return "cpu" if gpus == 0 else "single_h100" if gpus == 1 else "multi_gpu"


def config_path(name: str) -> Path:
    """A shipped accelerate config by name (`multi_gpu`, `fsdp.yaml`) or a path to one's own."""
    from climate_sft.config import shipped_dir

    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_dir("accelerate_configs") / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    names = ", ".join(sorted(p.stem for p in shipped_dir("accelerate_configs").glob("*.yaml")))
    raise UserError(f"--accelerate_config {name}: no such file or shipped config; shipped: {names}")


def launch_command(module: str, argv: list[str], config: str | None, num_processes: int | None, gpus: int):
    """The `accelerate launch` line for `python -m module argv`, with the process count for this machine."""
    path = config_path(config or default_config(gpus))
    if num_processes is None:
        num_processes = max(1, gpus) if _distributed(path) else 1
    if num_processes < 1:
        raise UserError(f"--num_processes {num_processes}: give at least 1")
    launcher = [sys.executable, "-m", "climate_sft.launch", "--config_file", str(path)]
    return [*launcher, "--num_processes", str(num_processes), "-m", module, *argv]


def _distributed(path: Path) -> bool:
    import yaml

    return yaml.safe_load(path.read_text()).get("distributed_type", "NO") != "NO"


def take_launch_flags(argv: list[str]) -> tuple[str | None, int | None, list[str]]:
    """`--accelerate_config X` and `--num_processes N` out of the line; the rest goes to the entry point."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--accelerate_config", "--accelerate-config", dest="accelerate_config")
    parser.add_argument("--num_processes", "--num-processes", dest="num_processes", type=int)
    known, rest = parser.parse_known_args(argv)
    return known.accelerate_config, known.num_processes, rest


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (a no-op elsewhere), and go at once if the parent
    is gone already."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the request took hold
        os.kill(os.getpid(), sig)


def launch(module: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run `python -m module argv` under accelerate launch; returns its exit status. `env`: the child's environment
    (default: this one)."""
    config, num_processes, rest = take_launch_flags(argv)
    command = launch_command(module, rest, config, num_processes, visible_gpus())
    print("launching: " + " ".join(command[1:]), file=sys.stderr, flush=True)
    return subprocess.run(command, env=env).returncode


def _accelerate_launch(argv: list[str]) -> int:
    """accelerate's own `launch` over argv; a failed child gives its exit status, and the child has printed its
    line already."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        accelerate_launch(launch_command_parser().parse_args(argv))
    except subprocess.CalledProcessError as failed:
        return failed.returncode
    except ChildFailedError as failed:
        codes = [f.exitcode for f in failed.failures.values()]
        return next((code for code in codes if code > 0), 1)
    return 0


if __name__ == "__main__":
    die_with_parent()
    with error_boundary("climate-sft launch"):
        code = _accelerate_launch(sys.argv[1:])
    sys.exit(code)
