"""The hostile self-probe of files, generated rather than listed: every file of a finished run that `report`,
`merge`, `eval` and `generate` read, made missing, empty, cut in half or garbage, one at a time.

Each case runs the real command in-process (`cli.main`) and asserts what the README promises: exit status 0 or 2,
no traceback, one `climate-sft CMD: error:` line naming the damaged file, and every other file of the run
byte-identical afterwards (the command's own outputs appear whole or not at all). `report` is cheap and probed
in full in `make test`; the commands that load a model are probed on the adapter and the run record there, and
in full with `make test-slow`.
"""

from __future__ import annotations

import collections
import hashlib
import shutil
from pathlib import Path

import pytest

from climate_sft import cli

DAMAGES = {
    "missing": lambda path: path.unlink(),
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)]),
    "garbage": lambda path: path.write_bytes(bytes(range(256)) * 4),
    "wrong shape": lambda path: path.write_text("[1, 2, 3]\n" if path.suffix == ".json" else "- a\n- b\n"),
}
# What each command may write (excluded from the comparison); the files damaged are listed from the run folder
# (and, for merge and generate with --base, from the base model folder) when the test is collected.
WRITES = {
    "report": {"REPORT.md", "README.md", "loss.png", "throughput.png", "perplexity.png"},
    "merge": set(),
    "eval": {
        "eval_results.json",
        "samples.json",
        *(f"{t}_passages.{e}" for t in ("heldout", "general") for e in ("yaml", "jsonl")),
    },
    "generate": {"samples.json"},
}
# Files without which a command cannot have worked: a damaged one that it accepts was read as if whole.
_MODEL = ("adapter_model.safetensors", "adapter_config.json", "config.json")
VITAL = {"report": (), "merge": _MODEL, "eval": (*_MODEL, "data.json"), "generate": (*_MODEL, "data.json")}
# Cheap enough for `make test`: every file for report; the model-loading commands on a few files each.
FAST = {
    ("merge", "run", "adapter_model.safetensors"),
    ("merge", "base", "tokenizer.json"),
    ("eval", "run", "data.json"),
}


def _argv(command: str, run: Path, out: Path, base: Path | None) -> list[str]:
    argv = {
        "report": ["report", str(run)],
        "merge": ["merge", str(run), "--output", str(out / "merged")],
        "eval": ["eval", str(run), "--samples", "0"],
        "generate": ["generate", str(run), "--samples", "1", "--max-new-tokens", "4"],
    }[command]
    return argv + (["--base", str(base)] if base else [])


def _run(argv: list[str]) -> int:
    """cli.main's exit status: 0 when it returns, the code of its SystemExit otherwise."""
    try:
        cli.main(argv)
    except SystemExit as stop:
        return stop.code or 0
    return 0


def _digest(folder: Path, skip: set[str]) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, tiny_run_dir):
    """The tiny finished run, evaluated and reported once, so that every file the commands read exists."""
    run = tmp_path_factory.mktemp("probe_files") / "run"
    shutil.copytree(tiny_run_dir, run)
    for argv in (["eval", str(run), "--samples", "1"], ["report", str(run)]):
        assert _run(argv) == 0
    return run


def _probe(evaluated_run, tiny_model_dir, tmp_path, capsys, command, where, name, damage) -> int:
    case = tmp_path / f"{command}-{where}-{name}-{damage}".replace(" ", "_")
    run = case / "run"
    shutil.copytree(evaluated_run, run)
    base = None
    if where == "base":
        base = case / "base"
        shutil.copytree(tiny_model_dir, base)
    DAMAGES[damage]((base if base else run) / name)
    skip = WRITES[command]
    before = _digest(run, skip)
    code = _run(_argv(command, run, case, base))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    label = f"{command} with {where} file {name} {damage}"
    assert code in (0, 2), f"{label}: exit {code}\n{output[-2000:]}"
    assert "Traceback" not in output, f"{label}\n{output[-2000:]}"
    if code == 2:
        errors = [line for line in captured.err.splitlines() if line.startswith("climate-sft") or "rror" in line]
        assert len(errors) == 1 and errors[0].startswith(f"climate-sft {command}: error: "), f"{label}: {captured.err}"
    else:  # a file the command can do without (an optional result) must not have been read as if whole
        assert damage == "missing" or name not in VITAL[command], f"{label}: accepted\n{output[-800:]}"
    assert _digest(run, skip) == before, label
    assert not list(run.glob(".*.tmp-*")), f"{label}: a temporary was left behind"
    if command == "merge":
        assert (code == 0) == (case / "merged" / "config.json").is_file(), label
    shutil.rmtree(case)
    return code


def _all_cases(evaluated_run, tiny_model_dir, commands, only=None):
    """Every (command, folder, file, damage), the files listed from the folders themselves."""
    run_files = sorted(p.name for p in evaluated_run.iterdir() if p.is_file())
    base_files = sorted(p.name for p in tiny_model_dir.iterdir() if p.is_file())
    cases = [(c, "run", n) for c in commands for n in run_files]
    cases += [(c, "base", n) for c in commands if c in ("merge", "generate") for n in base_files]
    return [(c, w, n, d) for c, w, n in cases for d in DAMAGES if only is None or (c, w, n) in only]


def _probe_all(evaluated_run, tiny_model_dir, tmp_path, capsys, cases) -> collections.Counter:
    outcomes = collections.Counter()
    for command, where, name, damage in cases:
        code = _probe(evaluated_run, tiny_model_dir, tmp_path, capsys, command, where, name, damage)
        outcomes[(command, damage, code)] += 1
    print({f"{c} {d} -> exit {code}": n for (c, d, code), n in sorted(outcomes.items())})
    return outcomes


def test_every_file_report_reads_damaged_every_way(evaluated_run, tiny_model_dir, tmp_path, capsys):
    outcomes = _probe_all(
        evaluated_run, tiny_model_dir, tmp_path, capsys, _all_cases(evaluated_run, tiny_model_dir, ["report"])
    )
    assert sum(n for (_, _, code), n in outcomes.items() if code == 2) >= 4 * 5  # stats, recipe, eval, samples


def test_the_model_loading_commands_on_their_vital_files(evaluated_run, tiny_model_dir, tmp_path, capsys):
    cases = _all_cases(evaluated_run, tiny_model_dir, ["merge", "eval"], only=FAST)
    outcomes = _probe_all(evaluated_run, tiny_model_dir, tmp_path, capsys, cases)
    assert sum(n for (_, d, code), n in outcomes.items() if code == 2 and d != "missing") >= 6


@pytest.mark.slow
def test_every_file_of_the_run_and_base_for_every_command(evaluated_run, tiny_model_dir, tmp_path, capsys):
    cases = _all_cases(evaluated_run, tiny_model_dir, ["merge", "eval", "generate"])
    _probe_all(evaluated_run, tiny_model_dir, tmp_path, capsys, cases)


def test_report_refuses_perplexities_of_an_earlier_adapter(evaluated_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    assert _run(["report", str(run)]) == 0  # control: the evaluated adapter itself reports
    adapter = run / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-8] + b"\x00" * 8)  # the run trained further: other weights
    before = (run / "REPORT.md").read_bytes()
    assert _run(["report", str(run)]) == 2
    assert "measured on an earlier adapter" in capsys.readouterr().err
    assert (run / "REPORT.md").read_bytes() == before


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["generate", "{run}", "--max-new-tokens", "0", "--prompt", "x"], "--max-new-tokens: must be at least 1"),
        (["generate", "{run}", "--max-new-tokens", "-5", "--prompt", "x"], "--max-new-tokens: must be at least 1"),
        (["generate", "{run}", "--temperature", "0", "--sample", "--prompt", "x"], "--temperature: must be above 0"),
        (["generate", "{run}", "--top-p", "nan", "--prompt", "x"], "--top-p: must be above 0"),
        (["generate", "{run}", "--prompt", ""], "--prompt: must not be empty"),
        (["eval", "{run}", "--stride", "-5"], "--stride: must be at least 1"),
        (["eval", "{run}", "--samples", "-2"], "--samples: must be at least 0"),
        (["eval", "{run}", "--forgetting-threshold", "inf"], "--forgetting-threshold: must be above 0"),
        (["eval", "{run}", "--limit", "0"], "--limit: must be at least 1"),
        (["eval", "{run}", "--tasks", " , "], "--tasks ' , ': name at least one task"),
        (["eval", ""], "run_dir: must not be empty"),
        (["merge", "{run}", "--output", ""], "--output: must name a folder"),
        (["merge", "{run}", "--output", "{file}"], "is a file"),
        (["extract", "--output", ""], "--output: must name a folder"),
        (["extract", "--split", "nan,0.1,0.1"], "--split nan,0.1,0.1: give three"),
        (["extract", "--split", "inf,0,0"], "--split inf,0,0: give three"),
    ],
)
def test_flags_out_of_range_are_one_line(evaluated_run, tmp_path, capsys, argv, fragment):
    (tmp_path / "a_file").write_text("keep me")
    fields = {"run": evaluated_run, "file": tmp_path / "a_file"}
    before = _digest(evaluated_run, set())
    code = _run([a.format(**fields) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert _digest(evaluated_run, set()) == before
    assert (tmp_path / "a_file").read_text() == "keep me"
