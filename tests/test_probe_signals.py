"""The hostile self-probe of interruptions (`make test-slow`): Ctrl-C (SIGINT) and kill -9 (SIGKILL) at several
moments of each command that writes a run's outputs. Whatever the moment, the command ends with its one line (or
is gone), no traceback is printed, every output is whole or absent, every earlier output is byte-identical, and
the next run of the command leaves no temporary behind."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMANDS = {
    "eval": (
        ["eval", "{run}", "--samples", "1"],
        {
            "eval_results.json",
            "samples.json",
            *(f"{t}_passages.{e}" for t in ("heldout", "general") for e in ("yaml", "jsonl")),
        },
    ),
    "report": (["report", "{run}"], {"REPORT.md", "README.md", "loss.png", "throughput.png", "perplexity.png"}),
    "merge": (["merge", "{run}", "--output", "{out}/merged"], set()),
}
MOMENTS = (0.5, 3.0, 8.0)  # seconds after the start: imports, model loading, writing (on 2 shared cores)


def _digest(folder: Path, skip: set[str]) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip and ".tmp-" not in p.name
    }


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, tiny_run_dir):
    run = tmp_path_factory.mktemp("probe_signals") / "run"
    shutil.copytree(tiny_run_dir, run)
    for argv in (["eval", str(run), "--samples", "1"], ["report", str(run)]):
        done = subprocess.run([sys.executable, "-m", "climate_sft.cli", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_interrupted_command_leaves_whole_outputs(evaluated_run, tmp_path, command, sig, moment):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    argv, outputs = COMMANDS[command]
    argv = [a.format(run=run, out=tmp_path) for a in argv]
    before = _digest(run, outputs)
    whole = {name: (run / name).read_bytes() for name in outputs if (run / name).is_file()}
    process = subprocess.Popen(
        [sys.executable, "-m", "climate_sft.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(moment)
    process.send_signal(sig)
    out, err = process.communicate(timeout=300)
    assert "Traceback" not in out + err, err[-2000:]
    if process.returncode not in (0, -signal.SIGKILL):
        assert process.returncode == 130 and err.strip().endswith(f"climate-sft {command}: interrupted"), err[-500:]
    assert _digest(run, outputs) == before  # nothing else of the run changed
    for name in outputs:  # each output is the earlier one or a new whole one (a PNG or JSON that parses)
        path = run / name
        if path.is_file() and path.read_bytes() != whole.get(name):
            assert path.suffix != ".json" or path.read_text().rstrip().endswith("}"), name
    merged = tmp_path / "merged"
    assert not merged.exists() or (merged / "config.json").is_file()
    # the next run goes through and removes what the killed one left
    shutil.rmtree(merged, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "climate_sft.cli", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(run.glob(".*.tmp-*")) and not list(tmp_path.glob(".merged.tmp-*"))
