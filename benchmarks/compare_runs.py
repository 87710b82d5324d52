"""Do two runs agree? Losses step by step (training_stats.json) and the saved adapters tensor by tensor.

    python -m benchmarks.compare_runs REFERENCE_RUN OTHER_RUN [--loss-atol 1e-5] [--loss-rtol 0] [--weight-atol 1e-6]

Prints one JSON line and exits 1 when they disagree past the tolerances. Used for loss parity of a sharded or
multi-machine run against its reference, and for "resumed run == uninterrupted run" (tests and GPU session).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ADAPTER = "adapter_model.safetensors"


def losses(run: Path) -> dict[int, float]:
    stats = json.loads((run / "training_stats.json").read_text())
    return {entry["step"]: entry["loss"] for entry in stats["losses"]}


def compare_runs(reference: Path, other: Path) -> dict:
    """Largest loss and adapter differences between two finished runs; steps and tensors must be the same."""
    from safetensors.torch import load_file

    a, b = losses(reference), losses(other)
    steps = sorted(a.keys() & b.keys())
    result = {
        "reference": str(reference),
        "other": str(other),
        "steps": len(steps),
        "same_steps": a.keys() == b.keys(),
        "max_loss_difference": max((abs(a[s] - b[s]) for s in steps), default=None),
        "max_relative_loss_difference": max((abs(a[s] - b[s]) / abs(a[s]) for s in steps if a[s]), default=None),
        "first_losses": [[a[s], b[s]] for s in steps[:3]],
    }
    if (reference / ADAPTER).is_file() and (other / ADAPTER).is_file():
        wa, wb = load_file(reference / ADAPTER), load_file(other / ADAPTER)
        shared = [k for k in wa.keys() & wb.keys() if wa[k].shape == wb[k].shape]
        result["same_tensors"] = wa.keys() == wb.keys() == set(shared)
        result["max_weight_difference"] = max(
            ((wa[k].float() - wb[k].float()).abs().max().item() for k in shared), default=0.0
        )
    return result


def agree(result: dict, loss_atol: float, loss_rtol: float, weight_atol: float) -> bool:
    """Same steps, every loss within loss_atol + loss_rtol * |loss|, same tensors within weight_atol (if saved)."""
    if not result["same_steps"] or not result["steps"]:
        return False
    loss_ok = result["max_loss_difference"] <= loss_atol or result["max_relative_loss_difference"] <= loss_rtol
    if "max_weight_difference" not in result:
        return loss_ok
    return loss_ok and result["same_tensors"] and result["max_weight_difference"] <= weight_atol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--loss-atol", type=float, default=1e-5)
    parser.add_argument("--loss-rtol", type=float, default=0.0, help="e.g. 1e-3 for bf16 runs on different GPUs")
    parser.add_argument("--weight-atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    for run in (args.reference, args.other):
        if not (run / "training_stats.json").is_file():
            parser.error(f"{run}: no training_stats.json; give the output_dir of a finished run")
    result = compare_runs(args.reference, args.other)
    result["agree"] = agree(result, args.loss_atol, args.loss_rtol, args.weight_atol)
    result["tolerances"] = {"loss_atol": args.loss_atol, "loss_rtol": args.loss_rtol, "weight_atol": args.weight_atol}
    print(json.dumps(result))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
