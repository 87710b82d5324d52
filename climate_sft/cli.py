"""The `climate-sft` command: one subcommand per stage, plus the shipped recipes.

    climate-sft extract SOURCE --output CORPUS_DIR   (a folder of PDFs / .txt / .md, a .jsonl file, or
        --dataset_name NAME) [--ocr] [--keep-back-matter] [--languages en,fr] [--stratify FIELD] [--shard I/N]
    climate-sft train --config RECIPE [--accelerate_config NAME] [--num_processes N] [--dry-run] [--key value ...]
    climate-sft find-batch-size --config RECIPE [--accelerate_config NAME] [--num_processes N]
    climate-sft merge RUN_DIR --output DIR [--dtype bfloat16] [--base FOLDER] [--gguf]
    climate-sft generate RUN_DIR --prompt TEXT [--interactive] [--base FOLDER]
    climate-sft eval RUN_DIR [--general-text DIR] [--forgetting-threshold 0.05] [--samples 3]
    climate-sft report RUN_DIR
    climate-sft ls                       the shipped recipes and accelerate configs
    climate-sft cp NAME [DEST]           copy one out to edit

Each subcommand imports its stage's module only when it runs (torch, transformers and TRL take seconds to
import), so `climate-sft --help` answers at once. Every command runs inside `climate_sft.error_boundary`: whatever
escapes ends as one stderr line (exit 2 for bad input, 1 for an internal fault; `--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

from climate_sft import UserError, error_boundary, take_debug_flag

SHIPPED_KINDS = ("recipes", "accelerate_configs")


# Every numeric or path flag is read through one of these, so a value out of range is one line, whatever the flag.
def _number(text: str, kind: type, low: float, high: float = float("inf"), low_open: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bound = f"{'above' if low_open else 'at least'} {low:g}" + (
            f" and at most {high:g}" if high < float("inf") else ""
        )
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1)


def non_negative_int(text: str) -> int:
    return _number(text, int, 0)


def positive_float(text: str) -> float:
    return _number(text, float, 0, low_open=True)


def probability(text: str) -> float:
    return _number(text, float, 0, 1, low_open=True)


def output_path(text: str) -> str:
    if not text.strip() or Path(text) == Path("."):
        raise argparse.ArgumentTypeError(
            "must name a folder, not be empty or '.' (nothing is written into the current folder)"
        )
    return text


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line through the error boundary, not the usage and a second line."""

    def error(self, message: str):
        raise UserError(message)


def _shipped() -> dict[str, Path]:
    # config.py holds where shipped files live; imported here, not at the top, because it imports TRL
    from climate_sft.config import shipped_dir

    return {f"{kind}/{path.name}": path for kind in SHIPPED_KINDS for path in sorted(shipped_dir(kind).glob("*.yaml"))}


def _first_comment_line(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.strip("# ")
    return ""


def _ls(args: argparse.Namespace) -> None:
    for name, path in _shipped().items():
        print(f"{name:42s} {_first_comment_line(path)}")


def _cp(args: argparse.Namespace) -> None:
    shipped = _shipped()
    matches = [p for name, p in shipped.items() if args.name in (name, Path(name).name, Path(name).stem)]
    if not matches:
        raise UserError(
            f"{args.name}: no shipped recipe or accelerate config by that name; `climate-sft ls` lists them"
        )
    source = matches[0]
    dest = Path(args.dest or source.name)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists():
        raise UserError(f"{dest}: already exists; give another destination (climate-sft cp {args.name} NEW.yaml)")
    shutil.copyfile(source, dest)
    print(f"copied {source.parent.name}/{source.name} to {dest}")


def _extract(args: argparse.Namespace) -> None:
    from climate_sft.corpus import SAMPLE_PDF_DIR, build_corpus, shard_summary, summary
    from climate_sft.sources import HubDataset

    ratios = tuple(float(r) for r in args.split.split(",")) if _is_ratios(args.split) else ()
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise UserError(f"--split {args.split}: give three non-negative ratios, e.g. 0.9,0.05,0.05")
    if args.dataset_name and args.source:
        raise UserError(f"give SOURCE ({args.source}) or --dataset_name ({args.dataset_name}), not both")
    if args.dataset_name:
        source = HubDataset(args.dataset_name, args.dataset_config, args.dataset_train_split)
    else:
        source = args.source or SAMPLE_PDF_DIR
    shard = _shard(args.shard) if args.shard else None
    languages = [code.strip() for code in args.languages.split(",") if code.strip()] if args.languages else None
    options = dict(ocr=args.ocr, keep_back_matter=args.keep_back_matter, languages=languages, stratify=args.stratify)
    stats, results = build_corpus(
        source, args.output, ratios, args.seed, args.workers, shard, text_field=args.text_field, **options
    )
    if shard:
        print(shard_summary(shard, results, Path(args.output)))
    else:
        print(summary(stats, results, Path(args.output)))


def _shard(value: str) -> tuple[int, int]:
    i, _, n = value.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise UserError(f"--shard {value}: give I/N with 0 <= I < N, e.g. 0/4 (SLURM: $SLURM_ARRAY_TASK_ID/N)")
    return int(i), int(n)


def _is_ratios(text: str) -> bool:
    try:
        return all(math.isfinite(float(r)) for r in text.split(","))
    except ValueError:
        return False


def _launched(module: str, rest: list[str], in_process) -> None:
    """Start `accelerate launch` for the module (a process per GPU), unless already under a launcher or only
    checking (--dry-run, --help-keys, --help load no model)."""
    from climate_sft.config import secrets_to_environment
    from climate_sft.launch import already_launched, launch, take_launch_flags

    checking = any(flag in rest for flag in ("--dry-run", "--help-keys", "--help", "-h"))
    if already_launched() or checking:
        in_process(take_launch_flags(rest)[2])
        return
    # tokens travel to the child in its environment, never on a command line that `ps` and the log show
    rest, env = secrets_to_environment(rest)
    _check_recipe(take_launch_flags(rest)[2])  # bad input ends here, in one line, before any process starts
    sys.exit(launch(module, rest, env))


def _check_recipe(argv: list[str]) -> None:
    from climate_sft.config import load_recipe, preflight

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--config")
    parser.add_argument("--fresh", action="store_true")  # train's own flag, not a recipe key
    known, overrides = parser.parse_known_args(argv)
    if known.config:  # without it the entry point itself says what is missing
        preflight(load_recipe(known.config, overrides), check_modules=False)


def _train(args: argparse.Namespace, rest: list[str]) -> None:
    from climate_sft import train

    _launched("climate_sft.train", rest, train.main)


def _find_batch_size(args: argparse.Namespace, rest: list[str]) -> None:
    from climate_sft import batch_size

    _launched("climate_sft.batch_size", rest, batch_size.main)


def _eval(args: argparse.Namespace) -> None:
    from climate_sft.evaluation import evaluate_run, summary_line

    given = dict(general_text=args.general_text, forgetting_threshold=args.forgetting_threshold)
    options = {key: value for key, value in given.items() if value is not None}  # evaluation.py has the defaults
    results = evaluate_run(args.run_dir, batch_size=args.batch_size, stride=args.stride, **options)
    print(summary_line(results, args.run_dir))
    if args.samples:
        from climate_sft.generate import write_samples

        print(f"answers to {args.samples} held-out passages written to {write_samples(args.run_dir, args.samples)}")


def _report(args: argparse.Namespace) -> None:
    from climate_sft.model_card import write_model_card
    from climate_sft.report import write_report

    print(f"report written to {write_report(args.run_dir)}")
    print(f"model card written to {write_model_card(args.run_dir)}")


def _merge(args: argparse.Namespace) -> None:
    from climate_sft.merge import merge

    written = merge(args.run_dir, args.output, args.dtype, args.base, args.gguf, args.converter)
    for kind, path in written.items():
        print(f"{kind}: {path}")


def _generate(args: argparse.Namespace) -> None:
    from climate_sft.generate import Decoding, SideBySide, interactive, write_samples

    decoding = Decoding(args.max_new_tokens, args.sample, args.temperature, args.top_p, args.seed, args.chat)
    if args.samples:
        print(f"written to {write_samples(args.run_dir, args.samples, args.base, decoding)}")
        return
    if not args.prompt and not args.interactive:
        raise UserError("give --prompt TEXT (repeatable), --interactive, or --samples N")
    pair = SideBySide(args.run_dir, args.base)
    for prompt in args.prompt or []:
        pair.show(prompt, decoding)
    if args.interactive:
        interactive(pair, decoding)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="climate-sft", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="PDFs, text files, JSONL or a dataset -> cleaned, split `datasets` corpus")
    p.add_argument(
        "source",
        nargs="?",
        default=None,
        help="folder of PDFs, .txt and .md files, or a .jsonl file (default: the bundled sample PDFs)",
    )
    # TRL's names for a dataset read by `datasets.load_dataset`
    p.add_argument("--dataset_name", help="hub dataset id, or a local dataset folder (also from save_to_disk)")
    p.add_argument("--dataset_config", help="the dataset's configuration name")
    p.add_argument("--dataset_train_split", default="train", help="the split read as documents (default: train)")
    p.add_argument(
        "--text-field",
        "--dataset_text_field",
        dest="text_field",
        default="text",
        help="field of .jsonl records / column of the dataset holding the text (default: text)",
    )
    p.add_argument(
        "--output", type=output_path, default="data/corpus", help="corpus folder to write (default: data/corpus)"
    )
    p.add_argument(
        "--split",
        default="0.9,0.05,0.05",
        help="train,validation,test shares of the corpus's (estimated) tokens; whole documents, at least 2 "
        "per held-out split where the corpus has 8 or more",
    )
    p.add_argument(
        "--stratify",
        metavar="FIELD",
        help="folder, kind or language: the manifest field whose values take turns in the held-out splits, so "
        "a test split is not all one kind",
    )
    p.add_argument("--seed", type=non_negative_int, default=42, help="seed of the document split")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    p.add_argument("--ocr", action="store_true", help="OCR pages without a text layer (needs Tesseract)")
    p.add_argument(
        "--keep-back-matter", action="store_true", help="keep reference lists, acknowledgements, licence boilerplate"
    )
    p.add_argument("--languages", help="keep only documents in these languages (ISO 639-1 codes, e.g. en,fr)")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="extract only share I (0-based) of N into the cache; a run without --shard then builds from the cache",
    )
    p.set_defaults(run=_extract)

    # these two take recipe keys as --key value flags: their own modules parse the rest of the line
    p = sub.add_parser(
        "train", help="fine-tune with a recipe: --config RECIPE [--dry-run] [--key value ...]", add_help=False
    )
    p.set_defaults(run_with_rest=_train)
    p = sub.add_parser(
        "find-batch-size", help="largest per-device batch that fits, effective batch kept", add_help=False
    )
    p.set_defaults(run_with_rest=_find_batch_size)

    p = sub.add_parser("eval", help="perplexity of base and fine-tuned model on the test split")
    p.add_argument("run_dir", type=non_empty, help="output folder of a training run")
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="windows per forward pass (default: by device)"
    )
    p.add_argument(
        "--stride", type=positive_int, default=None, help="sliding-window stride in tokens (default: half the window)"
    )
    p.add_argument(
        "--samples",
        type=non_negative_int,
        default=3,
        help="greedy answers to N held-out passages into samples.json (0: none)",
    )
    p.add_argument(
        "--general-text",
        metavar="DIR",
        help="folder of .txt / .md files of general, non-climate text to measure forgetting on "
        "(default: the bundled set)",
    )
    p.add_argument(
        "--forgetting-threshold",
        type=positive_float,
        help="rise in general-text perplexity the report flags as forgetting (default: 0.05, i.e. 5%%)",
    )
    p.set_defaults(run=_eval)

    p = sub.add_parser("report", help="write REPORT.md with plots for a run folder")
    p.add_argument("run_dir", type=non_empty, help="output folder of a training run")
    p.set_defaults(run=_report)

    p = sub.add_parser("merge", help="adapter merged into its base: a standalone safetensors model (and GGUF)")
    p.add_argument("run_dir", type=non_empty, help="output folder of a training run")
    p.add_argument(
        "--output", type=output_path, required=True, help="folder to write the merged model into (new or empty)"
    )
    p.add_argument("--dtype", default="bfloat16", help="bfloat16 (default), float16 or float32")
    p.add_argument("--base", help="the base model from a local folder instead of the run's model_name_or_path")
    p.add_argument("--gguf", action="store_true", help="also write a GGUF file (llama.cpp's converter)")
    p.add_argument("--converter", help="path to llama.cpp's convert_hf_to_gguf.py (default: $LLAMA_CPP_DIR/...)")
    p.set_defaults(run=_merge)

    p = sub.add_parser("generate", help="base and fine-tuned model answer the same prompts, streamed")
    p.add_argument("run_dir", type=non_empty, help="output folder of a training run")
    p.add_argument("--prompt", type=non_empty, action="append", help="text to continue (repeatable)")
    p.add_argument("--interactive", action="store_true", help="read prompts from the terminal, one per line")
    p.add_argument(
        "--samples", type=non_negative_int, default=0, help="write samples.json from N held-out passages instead"
    )
    p.add_argument("--sample", action="store_true", help="also a sampled answer from each (same seed)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--temperature", type=positive_float, default=0.7, help="sampling temperature, above 0")
    p.add_argument("--top-p", type=probability, default=0.9)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--base", help="the base model from a local folder instead of the run's model_name_or_path")
    p.set_defaults(run=_generate)

    p = sub.add_parser("ls", help="list the shipped recipes and accelerate configs")
    p.set_defaults(run=_ls)
    p = sub.add_parser("cp", help="copy a shipped recipe or accelerate config out to edit")
    p.add_argument("name", help="e.g. qlora_h100, recipes/smollm2_cpu.yaml, multi_gpu")
    p.add_argument("dest", nargs="?", help="file or folder (default: the current folder)")
    p.set_defaults(run=_cp)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    with error_boundary(f"climate-sft {argv[0] if argv else ''}".rstrip()):
        args, rest = parser.parse_known_args(argv)
    with error_boundary(f"climate-sft {args.command}"):
        if hasattr(args, "run_with_rest"):
            args.run_with_rest(args, rest)
            return
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.run(args)


if __name__ == "__main__":
    main()
