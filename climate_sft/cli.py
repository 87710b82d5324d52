"""The `climate-sft` command: one subcommand per stage.

    climate-sft extract PDF_DIR --output CORPUS_DIR [--ocr] [--keep-back-matter] [--languages en,fr]
    climate-sft train --config RECIPE [--dry-run] [--key value ...]
    climate-sft find-batch-size --config RECIPE
    climate-sft eval RUN_DIR
    climate-sft report RUN_DIR

Heavy libraries are imported inside each subcommand, so `climate-sft --help` answers at once. Errors the
user can fix end as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from climate_sft import UserError


def _extract(args: argparse.Namespace) -> None:
    from climate_sft.corpus import build_corpus, summary

    ratios = tuple(float(r) for r in args.split.split(","))
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise UserError(f"--split {args.split}: give three non-negative ratios, e.g. 0.9,0.05,0.05")
    languages = [code.strip() for code in args.languages.split(",") if code.strip()] if args.languages else None
    stats, results = build_corpus(
        args.pdf_dir, args.output, ratios, args.seed, args.workers, args.ocr, args.keep_back_matter, languages
    )
    print(summary(stats, results, Path(args.output)))


def _eval(args: argparse.Namespace) -> None:
    from climate_sft.evaluation import main as eval_main

    eval_main(args.run_dir, batch_size=args.batch_size, stride=args.stride)


def _report(args: argparse.Namespace) -> None:
    from climate_sft.report import write_report

    print(f"report written to {write_report(args.run_dir)}")


def build_parser() -> argparse.ArgumentParser:
    from climate_sft.corpus import SAMPLE_PDF_DIR

    parser = argparse.ArgumentParser(prog="climate-sft", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="PDF folder -> cleaned, split `datasets` corpus")
    p.add_argument("pdf_dir", nargs="?", default=str(SAMPLE_PDF_DIR), help="folder of PDFs (default: bundled sample)")
    p.add_argument("--output", default="data/corpus", help="corpus folder to write (default: data/corpus)")
    p.add_argument("--split", default="0.9,0.05,0.05", help="train,validation,test ratios by document")
    p.add_argument("--seed", type=int, default=42, help="seed of the document split")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--ocr", action="store_true", help="OCR pages without a text layer (needs Tesseract)")
    p.add_argument(
        "--keep-back-matter", action="store_true", help="keep reference lists, acknowledgements, licence boilerplate"
    )
    p.add_argument("--languages", help="keep only documents in these languages (ISO 639-1 codes, e.g. en,fr)")
    p.set_defaults(run=_extract)

    # These two parse their own flags (recipe keys as --key value), see `delegated` in main().
    sub.add_parser("train", help="fine-tune with a recipe: --config RECIPE [--dry-run] [--key value ...]")
    sub.add_parser("find-batch-size", help="largest per-device batch that fits, effective batch kept: --config RECIPE")

    p = sub.add_parser("eval", help="perplexity of base and fine-tuned model on the test split")
    p.add_argument("run_dir", help="output folder of a training run")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: by device)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride in tokens (default: half the window)")
    p.set_defaults(run=_eval)

    p = sub.add_parser("report", help="write REPORT.md with plots for a run folder")
    p.add_argument("run_dir", help="output folder of a training run")
    p.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = {"train": "climate_sft.train", "find-batch-size": "climate_sft.batch_size"}
    if argv and argv[0] in delegated:
        import importlib

        importlib.import_module(delegated[argv[0]]).main(argv[1:])
        return

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as error:
        print(f"climate-sft {args.command}: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
