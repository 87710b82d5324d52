"""Extraction at scale: pages/s and peak memory of `climate-sft extract` on 1,000 and 10,000 generated PDFs.

    python -m benchmarks.extract_scale [--files 1000 10000] [--shards 2]
    make bench-extract-scale

Each folder is made from the bundled sample PDFs (12 layouts, 1 to 3 pages), each copy given a line of its
own on page 1, so every file is extracted and every text is a document of its own (nothing is deduplicated
away). The real command runs in a new process, with every core, three ways: a cold build, a rerun that
finds everything in the cache, and (for the smallest folder) `--shard I/N` runs one after the other followed
by the plain run that builds from their caches. Peak memory is the largest single process of the command's
tree (the operating system's own accounting, `wait4`): flat memory means it does not grow with the folder.
Results go to benchmarks/results/extract_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

from climate_sft.corpus import SAMPLE_PDF_DIR, current_build
from climate_sft.files import write_atomic

RESULTS = Path(__file__).parent / "results" / "extract_scale.json"


def generate(folder: Path, files: int) -> None:
    """`files` PDFs under `folder` (1,000 a subfolder, as collections are kept), each with a text of its own."""
    templates = [p.read_bytes() for p in sorted(SAMPLE_PDF_DIR.glob("*.pdf"))]
    for i in range(files):
        with pymupdf.open("pdf", templates[i % len(templates)]) as doc:
            doc[0].insert_text((72, 30), f"Collection item {i:05d}, series {i % 97}", fontsize=8)
            target = folder / f"part{i // 1000:02d}" / f"item{i:05d}.pdf"
            target.parent.mkdir(parents=True, exist_ok=True)
            doc.save(target, garbage=1, deflate=True)


def timed_run(*args: str) -> dict:
    """One `climate-sft` command in a new process: wall seconds and the peak RSS of its largest process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "climate_sft.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"climate-sft {' '.join(args)} failed:\n{out}")
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}  # ru_maxrss is in KiB


def measure(files: int, shards: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pdfs, corpus = Path(tmp) / "pdfs", Path(tmp) / "corpus"
        start = time.perf_counter()
        generate(pdfs, files)
        generated = time.perf_counter() - start
        cold = timed_run("extract", str(pdfs), "--output", str(corpus))
        stats = json.loads((current_build(corpus) / "stats.json").read_text())
        pages = stats["total"]["pages"]
        cold["pages_per_s"] = round(pages / cold["wall_s"], 1)
        rerun = timed_run("extract", str(pdfs), "--output", str(corpus))
        run = {
            "files": files,
            "documents": stats["total"]["documents"],
            "pages": pages,
            "generate_s": round(generated, 1),
            "cold": cold,
            "rerun_from_cache": rerun,
        }
        if shards:
            sharded = Path(tmp) / "sharded"
            parts = [
                timed_run("extract", str(pdfs), "--output", str(sharded), "--shard", f"{i}/{shards}")
                for i in range(shards)
            ]
            merge = timed_run("extract", str(pdfs), "--output", str(sharded))
            same = stats["total"] == json.loads((current_build(sharded) / "stats.json").read_text())["total"]
            run["shards"] = {"count": shards, "each": parts, "merge": merge, "same_corpus_as_one_run": same}
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000], help="folder sizes (default 1000 10000)")
    parser.add_argument("--shards", type=int, default=2, help="shards for the smallest folder (0: none; default 2)")
    args = parser.parse_args()
    if min(args.files) < 1 or args.shards < 0:
        parser.error("--files: give positive counts; --shards: 0 or more")
    runs = [measure(n, args.shards if n == min(args.files) else 0) for n in args.files]
    result = {
        "command": "python -m benchmarks.extract_scale " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "python": platform.python_version(),
        "pymupdf": pymupdf.VersionBind,
        "workers": "every core (the default)",
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS, json.dumps(result, indent=2) + "\n")
    for run in runs:
        cold, rerun = run["cold"], run["rerun_from_cache"]
        print(
            f"{run['files']} PDFs, {run['pages']} pages: cold {cold['wall_s']} s ({cold['pages_per_s']} pages/s, "
            f"peak {cold['peak_rss_mib']} MiB) | rerun (cache) {rerun['wall_s']} s (peak {rerun['peak_rss_mib']} MiB)"
        )
        if "shards" in run:
            shards = run["shards"]
            print(
                f"  {shards['count']} shards: {[s['wall_s'] for s in shards['each']]} s, "
                f"merge {shards['merge']['wall_s']} s, same corpus as one run: {shards['same_corpus_as_one_run']}"
            )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
