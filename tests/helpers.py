"""Helpers the tests share: PDFs built on the fly (every bad-input case is a real file) and tiny recipes."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

PROSE = (
    "The ocean has absorbed more than ninety percent of the excess heat trapped by greenhouse gases "
    "since the nineteen seventies. Warmer water expands, and this thermal expansion raises sea level "
    "even before any ice melts on land. "
)


# Words a document's own prose draws from: documents of a test corpus must not be near-duplicates of each other
# (the corpus keeps one of a group), so each varies PROSE in its own seeded way.
CLIMATE_WORDS = (  # noqa: SIM905 (a word list reads better as words)
    "aerosol albedo aquifer basin biomass carbon cloud coastal delta drought estuary flood forest glacier harvest "
    "heatwave humidity ice jet lake mangrove methane monsoon nitrogen ozone peat permafrost plankton rainfall reef "
    "river runoff salinity savanna sediment snowpack soil storm sulphate tide tundra upwelling vapour wetland wind"
).split()


def distinct_prose(key: str, repeats: int = 1) -> str:
    """PROSE `repeats` times with every third word replaced by one drawn for `key`: English of its own, sharing
    almost no five-word run with another key's."""
    rng = random.Random(key)
    words = (PROSE * repeats).split()
    return " ".join(rng.choice(CLIMATE_WORDS) if i % 3 == 2 else word for i, word in enumerate(words))


def write_pdf(path: Path, pages: list[list[str]], title: str = "", **save_kwargs) -> Path:
    """A PDF whose page i shows the lines pages[i], one line per 14 pt, in Helvetica."""
    import pymupdf

    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page()
        for n, line in enumerate(lines):
            page.insert_text((72, 72 + 14 * n), line, fontname="helv", fontsize=11)
    # no dates and no random file id: the same pages give the same bytes, so a document's id (its file hash) and
    # the split it lands in are the same on every run
    doc.set_metadata({"title": title} if title else {})
    doc.save(path, **{"no_new_id": True, **save_kwargs})
    return path


DEFAULT_HEADER = "Climate Primer Series"


def prose_pages(n_pages: int, header: str = DEFAULT_HEADER, words_per_line: int = 12) -> list[list[str]]:
    """Pages of prose with a running header and a page-number footer, like a real report. The default header's
    prose is PROSE itself; another header's is its own (`distinct_prose`), so documents differ by header."""
    words = (PROSE * 6 if header == DEFAULT_HEADER else distinct_prose(header, 6)).split()
    lines = [" ".join(words[i : i + words_per_line]) for i in range(0, len(words), words_per_line)]
    return [[header, "", *lines, "", str(p + 1)] for p in range(n_pages)]


def write_recipe(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def recipe_maker(tmp_path: Path, model_dir: Path, corpus_dir: Path):
    """A function writing a recipe for a few CPU steps of a tiny model; keyword arguments override keys."""

    def make(**overrides) -> Path:
        values = dict(
            model_name_or_path=str(model_dir),
            dtype="float32",
            attn_implementation="sdpa",
            use_peft=True,
            lora_r=4,
            lora_alpha=8,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            corpus_dir=str(corpus_dir),
            max_length=64,
            packing=True,
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=True,
            optim="adamw_torch",
            learning_rate=1e-3,
            max_steps=3,
            per_device_train_batch_size=2,
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            output_dir=str(tmp_path / "run"),
            dataloader_num_workers=0,
            seed=0,
        )
        values.update(overrides)
        return write_recipe(tmp_path / "recipe.yaml", **values)

    return make


def free_port() -> int:
    """A TCP port nobody listens on now, for a rendezvous on localhost."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def complete_checkpoints(output_dir: Path) -> list[int]:
    """Steps of the checkpoints the Trainer finished writing (trainer_state.json comes last and parses)."""
    import json

    steps = []
    for state in output_dir.glob("checkpoint-*/trainer_state.json"):
        try:
            json.loads(state.read_text())
        except ValueError:
            continue
        steps.append(int(state.parent.name.split("-")[1]))
    return sorted(steps)


def kill_after_checkpoints(process, output_dir: Path, count: int, timeout: float = 600) -> list[int]:
    """SIGKILL the process and every process under it (a machine dying) once `count` checkpoints are complete;
    returns the complete checkpoints left behind. torchrun starts its workers in sessions of their own, so
    killing the launcher's process group would leave them training: the tree is stopped first, then killed."""
    import contextlib
    import signal
    import time

    import psutil

    deadline = time.time() + timeout
    while len(complete_checkpoints(output_dir)) < count and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        launcher = psutil.Process(process.pid)
        tree = [launcher, *launcher.children(recursive=True)]
        for signal_number in (signal.SIGSTOP, signal.SIGKILL):  # frozen first: no worker outlives the others
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signal_number)
        psutil.wait_procs(tree, timeout=30)
    process.wait()
    return complete_checkpoints(output_dir)
