"""The hostile self-probe of files, generated rather than listed: every file of a finished run that `report`,
`merge`, `eval` and `generate` read, made missing, empty, cut in half or garbage, one at a time.

Each case runs the real command in-process (`cli.main`) and asserts what the README promises: exit status 0 or 2,
no traceback, one `climate-sft CMD: error:` line naming the damaged file, and every other file of the run
byte-identical afterwards (the command's own outputs appear whole or not at all). `report` is cheap and probed
in full in `make test`; the commands that load a model are probed on the adapter and the run record there, and
in full with `make test-slow`.
"""

from __future__ import annotations

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
# The files each command reads from a run folder, and the outputs it may write (excluded from the comparison).
READS = {
    "report": (
        ["training_stats.json", "recipe.yaml", "eval_results.json", "samples.json"],
        {"REPORT.md", "README.md", "loss.png", "throughput.png", "perplexity.png"},
    ),
    "merge": (["adapter_config.json", "adapter_model.safetensors", "recipe.yaml"], set()),
    "eval": (
        ["adapter_config.json", "adapter_model.safetensors", "recipe.yaml", "data.json"],
        {"eval_results.json", "samples.json"},
    ),
    "generate": (["adapter_config.json", "adapter_model.safetensors", "recipe.yaml", "data.json"], {"samples.json"}),
}
FAST = {("report", name) for name in READS["report"][0]} | {
    ("merge", "adapter_model.safetensors"),
    ("eval", "data.json"),
}


def _argv(command: str, run: Path, out: Path) -> list[str]:
    return {
        "report": ["report", str(run)],
        "merge": ["merge", str(run), "--output", str(out / "merged")],
        "eval": ["eval", str(run), "--samples", "0"],
        "generate": ["generate", str(run), "--samples", "1", "--max-new-tokens", "4"],
    }[command]


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


def _cases(fast: bool):
    return [
        pytest.param(command, name, damage, id=f"{command}-{name}-{damage}")
        for command, (names, _) in READS.items()
        for name in names
        for damage in DAMAGES
        if ((command, name) in FAST) == fast
    ]


def _probe(evaluated_run, tmp_path, capsys, command, name, damage):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    DAMAGES[damage](run / name)
    skip = READS[command][1]
    before = _digest(run, skip)
    code = _run(_argv(command, run, tmp_path))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code in (0, 2), output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    if code == 2:
        errors = [line for line in captured.err.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith(f"climate-sft {command}: error: "), captured.err
    else:  # a file the command can do without (an optional result) must not have been read as if whole
        assert damage == "missing" or name not in ("adapter_model.safetensors", "data.json"), output
    assert _digest(run, skip) == before
    assert not list(run.glob(".*.tmp-*")), "a temporary was left behind"
    if command == "merge":
        assert code != 0 or (tmp_path / "merged" / "config.json").is_file()
        assert code == 0 or not (tmp_path / "merged").exists()
    return code


@pytest.mark.parametrize("command, name, damage", _cases(fast=True))
def test_damaged_file(evaluated_run, tmp_path, capsys, command, name, damage):
    _probe(evaluated_run, tmp_path, capsys, command, name, damage)


@pytest.mark.slow
@pytest.mark.parametrize("command, name, damage", _cases(fast=False))
def test_damaged_file_slow(evaluated_run, tmp_path, capsys, command, name, damage):
    _probe(evaluated_run, tmp_path, capsys, command, name, damage)


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
