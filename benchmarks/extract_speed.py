"""Extraction speed: the full pipeline against a bare `page.get_text()` loop over the same files.

    python -m benchmarks.extract_speed [PDF_DIR ...] [--copies 20] [--repeats 3]
    make bench-extract BENCH_PDF_DIR=~/my-pdfs

The bundled corpus is 28 pages, too little to time, so it is copied `--copies` times (the copies differ in
a byte, so each is extracted; their text is then deduplicated, as a real rerun of the same reports would
be). Each measurement is the median of `--repeats` runs with a cold extraction cache. Results go to
benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pymupdf

from climate_sft.corpus import SAMPLE_PDF_DIR, build_corpus
from climate_sft.files import write_atomic

RESULTS = Path(__file__).parent / "results" / "extract.json"


def bare_loop(paths: list[Path]) -> int:
    """What any extractor must do at least: open every file and get every page's text. Returns pages."""
    pages = 0
    for path in paths:
        with pymupdf.open(path) as doc:
            for page in doc:
                page.get_text()
                pages += 1
    return pages


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare(folder: Path, copies: int, into: Path) -> list[Path]:
    """PDFs under `folder`, copied `copies` times into `into` (each copy one trailing byte apart)."""
    paths = []
    for pdf in sorted(folder.rglob("*.pdf")):
        for i in range(copies):
            target = into / f"{pdf.stem}__{i}.pdf"
            shutil.copyfile(pdf, target)
            with open(target, "ab") as f:
                f.write(b"\n%" + str(i).encode() + b"\n")  # a PDF comment after %%EOF: new hash, same text
            paths.append(target)
    return paths


def measure(folder: Path, copies: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pdfs = Path(tmp) / "pdfs"
        pdfs.mkdir()
        paths = prepare(folder, copies, pdfs)
        pages = bare_loop(paths)  # also warms the OS file cache for every variant below

        runs = iter(range(10**6))

        def pipeline(workers: int):
            # a new output folder every time: cold extraction cache, and no cleanup inside the timing
            build_corpus(pdfs, Path(tmp) / f"corpus-{workers}-{next(runs)}", workers=workers)

        bare = timed(lambda: bare_loop(paths), repeats)
        one_core = timed(lambda: pipeline(1), repeats)
        cores = os.cpu_count() or 1
        all_cores = timed(lambda: pipeline(cores), repeats)
    return {
        "folder": os.path.relpath(folder),
        "files": len(paths),
        "pages": pages,
        "bare_get_text_pages_per_s": round(pages / bare, 1),
        "pipeline_1_core_pages_per_s": round(pages / one_core, 1),
        "pipeline_all_cores_pages_per_s": round(pages / all_cores, 1),
        "overhead_per_core_vs_bare": round(one_core / bare - 1, 3),
        "speedup_all_cores_vs_1": round(one_core / all_cores, 2),
        "cores": cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[SAMPLE_PDF_DIR])
    parser.add_argument("--copies", type=int, default=20, help="copies of each PDF (default 20)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = [measure(folder, args.copies if folder == SAMPLE_PDF_DIR else 1, args.repeats) for folder in args.folders]
    result = {
        "command": "make bench-extract",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "pymupdf": pymupdf.VersionBind,
        "target": "pipeline on 1 core at most 25% slower than the bare loop; all cores faster than 1",
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS, json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(
            f"{run['folder']}: {run['pages']} pages | bare get_text {run['bare_get_text_pages_per_s']} p/s | "
            f"pipeline 1 core {run['pipeline_1_core_pages_per_s']} p/s ({run['overhead_per_core_vs_bare']:+.0%}) | "
            f"{run['cores']} cores {run['pipeline_all_cores_pages_per_s']} p/s (x{run['speedup_all_cores_vs_1']})"
        )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
