"""Scaling of record: runs on N GPUs against one GPU at the same per-GPU micro-batch and effective batch.

    python -m benchmarks.scaling_table --one-gpu RUN_DIR --run ddp=RUN_DIR --run zero2=RUN_DIR ... [--out FILE.json]

Each RUN_DIR is a finished run's output folder (its training_stats.json). Speed is the steady rate, warm-up
steps excluded (training_stats' `this_segment.steady_tokens_per_second`, real tokens over all processes);
scaling efficiency = tokens/s on N GPUs / (N x tokens/s on one GPU). Memory is the peak of the main process's
GPU. Runs whose batch or sequence length differ from the one-GPU run are refused: they would not be comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# What must match between the one-GPU run and every other for the ratio to mean scaling.
SAME = ("per_device_train_batch_size", "effective_batch_size", "max_length", "precision", "model")


def read_stats(run: Path) -> dict:
    path = run / "training_stats.json"
    if not path.is_file():
        raise SystemExit(f"scaling_table: {run}: no training_stats.json; give the output_dir of a finished run")
    return json.loads(path.read_text())


def speed(stats: dict) -> float:
    steady = stats["this_segment"]["steady_tokens_per_second"]
    if not steady:
        raise SystemExit(f"scaling_table: {stats['recipe']}: no steady speed (too few steps past the warm-up)")
    return steady


def scaling_rows(one_gpu: dict, runs: dict[str, dict]) -> list[dict]:
    """One row per run, the one-GPU run first, with tokens/s per GPU and the scaling efficiency."""
    base = speed(one_gpu)
    rows = []
    for name, stats in {"one GPU": one_gpu, **runs}.items():
        different = [k for k in SAME if stats.get(k) != one_gpu.get(k)]
        if different:
            key = different[0]
            raise SystemExit(
                f"scaling_table: {name}: {key} is {stats.get(key)!r}, the one-GPU run's {one_gpu.get(key)!r}: "
                "scaling compares the same per-GPU micro-batch, effective batch and sequence length"
            )
        gpus, total = stats["world_size"], speed(stats)
        rows.append(
            {
                "run": name,
                "gpus": gpus,
                "batch": f"{stats['per_device_train_batch_size']} x {stats['gradient_accumulation_steps']}",
                "effective_batch_size": stats["effective_batch_size"],
                "tokens_per_s": round(total),
                "tokens_per_s_per_gpu": round(total / gpus),
                "scaling_efficiency": round(total / (gpus * base), 3),
                "speedup": round(total / base, 3),
                "peak_allocated_gb": stats.get("peak_gpu_memory_allocated_gb"),
                "peak_reserved_gb": stats.get("peak_gpu_memory_reserved_gb"),
                "steps_timed": stats["this_segment"]["steps"] - stats["this_segment"]["warmup_steps_excluded"],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | GPUs | batch per GPU x accumulation | tokens/s, all GPUs | tokens/s per GPU | speed-up | "
        "scaling efficiency | peak allocated / reserved per GPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        memory = f"{r['peak_allocated_gb']} / {r['peak_reserved_gb']} GB" if r["peak_allocated_gb"] else "-"
        lines.append(
            f"| {r['run']} | {r['gpus']} | {r['batch']} | {r['tokens_per_s']:,} | {r['tokens_per_s_per_gpu']:,} | "
            f"{r['speedup']:.2f}x | {r['scaling_efficiency']:.1%} | {memory} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one-gpu", type=Path, required=True, help="the one-GPU run's output folder")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR", help="a multi-GPU run")
    parser.add_argument("--out", type=Path, help="write the rows and the table here as JSON")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"--run {item}: write NAME=RUN_DIR, e.g. ddp=runs/ddp")
        runs[name] = read_stats(Path(folder))
    rows = scaling_rows(read_stats(args.one_gpu), runs)
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
