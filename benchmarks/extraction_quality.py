"""Extraction quality against reference text: climate-sft's `read_pdf`, plain `page.get_text()` and pymupdf4llm.

    python -m benchmarks.extraction_quality [--real DIR] [--out FILE]
    make bench-extract-quality REAL_DIR=DIR

Cases: the generated hard layouts of `benchmarks/extraction_cases.py` (built here, in a temporary folder),
and with `--real DIR` every `NAME.pdf` in DIR that has its reference text beside it as `NAME.txt` (see
`benchmarks/real_articles.py`, which prepares such a folder from open-access articles and their JATS XML).

Scores per document, on words (NFKC, lower case, `\\w+` runs, numbers included):
- recall: share of the reference's words found in the extraction (as a multiset);
- noise: share of the extraction's words that are not in the reference (page furniture, line numbers,
  reference lists, boilerplate, debris);
- order: Indel similarity of the two word sequences (1 - insertions and deletions / both lengths), which
  reading-order mistakes lower as much as missing or extra words do;
- broken words: adjacent extracted words that are one reference word run together ("impor tant").

pymupdf4llm (benchmark-only: `pip install -e ".[bench]"`) runs `to_markdown(header=False, footer=False)`, its
own furniture removal on; it is skipped, with the reason printed, where it is not importable. OCR: climate-sft
runs with `ocr=True` where Tesseract is installed, as a user with scans would.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pymupdf
from rapidfuzz.distance import Indel

from benchmarks.extraction_cases import write_cases
from climate_sft.pdf_text import PdfError, ocr_available, read_pdf

RESULTS = Path(__file__).parent / "results" / "extraction_quality.json"
REAL_CLASS = "real article"
_WORD = re.compile(r"\w+")

# The targets (generated cases: every class but the scan; real articles: means).
TARGET_RECALL, TARGET_NOISE, TARGET_OCR_RECALL, TARGET_REAL_RECALL = 0.99, 0.01, 0.95, 0.97


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def score(extracted: str, reference: str) -> dict:
    """Recall, noise, order similarity and broken words of one extraction against its reference."""
    got, want = words(extracted), words(reference)
    common = sum((Counter(got) & Counter(want)).values())
    vocabulary = set(want)
    broken = sum(
        (a not in vocabulary or b not in vocabulary) and a + b in vocabulary for a, b in itertools.pairwise(got)
    )
    return {
        "words": len(got),
        "reference_words": len(want),
        "recall": round(common / len(want), 4) if want else 0.0,
        "noise": round(1 - common / len(got), 4) if got else 0.0,
        "order": round(Indel.normalized_similarity(got, want), 4),
        "broken_words": broken,
    }


def climate_sft_text(path: Path) -> str:
    try:
        return read_pdf(path, ocr=ocr_available()).text
    except PdfError:
        return ""


def get_text(path: Path) -> str:
    with pymupdf.open(path) as doc:
        return "\n".join(page.get_text() for page in doc)


def extractors() -> tuple[dict, dict]:
    """The extractors to compare, and the versions of the libraries behind them (or why one is missing)."""
    found = {"climate-sft": climate_sft_text, "get_text": get_text}
    versions = {"pymupdf": pymupdf.VersionBind, "tesseract": "yes" if ocr_available() else "not installed"}
    try:
        import pymupdf4llm
    except ImportError as error:
        print(f"pymupdf4llm skipped: {error} (pip install -e '.[bench]')")
        versions["pymupdf4llm"] = f"not installed ({error})"
    else:
        found["pymupdf4llm"] = lambda path: pymupdf4llm.to_markdown(str(path), header=False, footer=False)
        versions["pymupdf4llm"] = pymupdf4llm.__version__
    return found, versions


def cases(generated_dir: Path, real_dir: Path | None) -> list[tuple[str, Path, str]]:
    """(class, pdf, reference text) for every case."""
    found = [(pdf.stem, pdf, pdf.with_suffix(".txt").read_text(encoding="utf-8")) for pdf in write_cases(generated_dir)]
    if real_dir:
        for pdf in sorted(real_dir.glob("*.pdf")):
            reference = pdf.with_suffix(".txt")
            if reference.exists():
                found.append((REAL_CLASS, pdf, reference.read_text(encoding="utf-8")))
            else:
                print(f"{pdf.name}: no {reference.name} beside it, left out")
    return found


def summarize(rows: list[dict]) -> dict:
    """Means per extractor and class."""
    table: dict = {}
    for extractor in dict.fromkeys(row["extractor"] for row in rows):
        for layout in dict.fromkeys(row["class"] for row in rows):
            mine = [row for row in rows if row["extractor"] == extractor and row["class"] == layout]
            table.setdefault(extractor, {})[layout] = {
                "documents": len(mine),
                **{key: round(statistics.mean(row[key] for row in mine), 4) for key in ("recall", "noise", "order")},
                "broken_words": sum(row["broken_words"] for row in mine),
                "seconds": round(sum(row["seconds"] for row in mine), 2),
            }
    return table


def targets(table: dict, ocr: bool) -> list[dict]:
    """Each target of the issue with its number and whether it is met."""
    ours, checks = table["climate-sft"], []
    for layout, row in ours.items():
        if layout == REAL_CLASS:
            continue
        if layout == "scan":
            if ocr:
                checks.append(
                    {
                        "target": f"scan: recall >= {TARGET_OCR_RECALL} (OCR)",
                        "value": row["recall"],
                        "met": row["recall"] >= TARGET_OCR_RECALL,
                    }
                )
            continue
        checks.append(
            {
                "target": f"{layout}: recall >= {TARGET_RECALL}",
                "value": row["recall"],
                "met": row["recall"] >= TARGET_RECALL,
            }
        )
        checks.append(
            {"target": f"{layout}: noise <= {TARGET_NOISE}", "value": row["noise"], "met": row["noise"] <= TARGET_NOISE}
        )
    if REAL_CLASS in ours:
        real, plain = ours[REAL_CLASS], table["get_text"][REAL_CLASS]
        checks.append(
            {
                "target": f"real articles: mean recall >= {TARGET_REAL_RECALL}",
                "value": real["recall"],
                "met": real["recall"] >= TARGET_REAL_RECALL,
            }
        )
        checks.append(
            {
                "target": "real articles: noise at most half of get_text's",
                "value": f"{real['noise']} vs {plain['noise']}",
                "met": real["noise"] <= plain["noise"] / 2,
            }
        )
        if "pymupdf4llm" in table:
            other = table["pymupdf4llm"][REAL_CLASS]
            checks.append(
                {
                    "target": "real articles: better recall and noise than pymupdf4llm",
                    "value": f"recall {real['recall']} vs {other['recall']}, noise {real['noise']} vs {other['noise']}",
                    "met": real["recall"] > other["recall"] and real["noise"] < other["noise"],
                }
            )
    return checks


def run(real_dir: Path | None) -> dict:
    found, versions = extractors()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout, pdf, reference in cases(Path(tmp), real_dir):
            for name, extract in found.items():
                start = time.perf_counter()
                text = extract(pdf)
                seconds = time.perf_counter() - start
                rows.append(
                    {
                        "extractor": name,
                        "class": layout,
                        "document": pdf.name,
                        "seconds": round(seconds, 3),
                        **score(text, reference),
                    }
                )
    table = summarize(rows)
    return {
        "command": "make bench-extract-quality" + (" REAL_DIR=..." if real_dir else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": versions,
        "targets": targets(table, ocr_available()),
        "by_class": table,
        "documents": rows,
    }


def print_table(result: dict) -> None:
    table = result["by_class"]
    head = ("class", "extractor", "docs", "recall", "noise", "order", "broken", "s")
    print("{:16s} {:12s} {:>4s} {:>7s} {:>7s} {:>7s} {:>6s} {:>7s}".format(*head))
    for layout in next(iter(table.values())):
        for extractor, classes in table.items():
            row = classes[layout]
            print(
                f"{layout:16s} {extractor:12s} {row['documents']:4d} {row['recall']:7.3f} {row['noise']:7.3f} "
                f"{row['order']:7.3f} {row['broken_words']:6d} {row['seconds']:7.2f}"
            )
    for check in result["targets"]:
        print(f"{'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['value']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, help="folder of NAME.pdf + NAME.txt (reference text) pairs")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    result = run(args.real)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
