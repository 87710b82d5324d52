"""Stage 6c: task accuracy of the base model and of base + adapter, through lm-evaluation-harness.

    climate-sft eval RUN_DIR [--tasks NAME[,NAME...]] [--tasks-dir DIR] [--limit N]

Every task is multiple choice scored by log-likelihood (lm-eval's acc and acc_norm), run in this process on the
model `evaluation.py` already loaded: the base is the PEFT model with its adapter disabled, so the weights load
once (4-bit where the recipe quantizes). Two tasks are written into the run folder for every run, because they
need no data from outside:

- `heldout_passages`: passages cut from the run's own held-out test documents; the true continuation is to be
  picked among CHOICES continuations of other held-out passages. Did the model learn the documents' domain?
- `general_passages`: the same, on the Python language reference (`general_text.py`): text nobody here wrote,
  outside climate. Did it lose general ability?

Tasks of lm-eval itself (`arc_easy`, `hellaswag`) and the shipped `climate_fever` (`tasks/`) read their data from
the hub; `climate-sft tasks download climate_fever DIR` keeps a local copy for offline runs. Per task the result
is base -> fine-tuned accuracy with paired bootstrap intervals over items (`confidence.accuracy_intervals`).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import yaml

from climate_sft import UserError
from climate_sft.confidence import accuracy_intervals, distinguishable, with_interval
from climate_sft.files import write_atomic
from climate_sft.general_text import SOURCE, reference_topics

logger = logging.getLogger(__name__)
SHIPPED_TASKS_DIR = Path(__file__).parent / "tasks"
HELDOUT_TASK, GENERAL_TASK = "heldout_passages", "general_passages"
DEFAULT_TASKS = (HELDOUT_TASK, GENERAL_TASK)
# Tasks whose fall says the model lost ability outside the corpus (forgetting), not that it learned less.
GENERAL_TASKS = {GENERAL_TASK, "arc_easy", "arc_challenge", "hellaswag"}
CONTEXT_WORDS, CONTINUATION_WORDS = 40, 12
CHOICES = 4
ITEMS = 60  # passages per generated task; --limit caps what is scored
SEED = 0
# Shipped tasks whose data no licence lets us ship: hub dataset and split, for `climate-sft tasks download`.
HUB_DATA = {"climate_fever": ("tdiggelm/climate_fever", "test")}
# A fall in a general task's accuracy beyond this many points is flagged in the report as forgetting.
ACCURACY_DROP_THRESHOLD = 0.05
METRICS = ("acc", "acc_norm")


class TaskError(UserError):
    """A task that cannot be run: unknown name, broken YAML, missing data file."""


def passage_items(texts: list[str], count: int = ITEMS, choices: int = CHOICES, seed: int = SEED) -> list[dict]:
    """Multiple-choice items from texts: a passage of CONTEXT_WORDS words, its true continuation of
    CONTINUATION_WORDS words and `choices - 1` continuations of other passages, in an order drawn by `seed`.
    Passages do not overlap; fewer than two passages give no item."""
    span = CONTEXT_WORDS + CONTINUATION_WORDS
    passages = []
    for text in texts:
        words = text.split()
        passages += [words[start : start + span] for start in range(0, len(words) - span + 1, span)]
    if len(passages) < 2:
        return []
    rng = random.Random(seed)
    picked = rng.sample(range(len(passages)), min(count, len(passages)))
    items = []
    for i in picked:
        others = rng.sample([j for j in range(len(passages)) if j != i], min(choices, len(passages)) - 1)
        order = [i, *others]
        rng.shuffle(order)
        items.append(
            {
                "context": " ".join(passages[i][:CONTEXT_WORDS]),
                "choices": [" ".join(passages[j][CONTEXT_WORDS:]) for j in order],
                "label": order.index(i),
            }
        )
    return items


def write_passage_task(folder: Path, name: str, items: list[dict], description: str) -> Path:
    """An lm-eval task: `folder/name.yaml` reading `folder/name.jsonl`, multiple choice by log-likelihood."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    write_atomic(data, "".join(json.dumps(item) + "\n" for item in items))
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "metadata": {"version": 1.0, "description": description},
    }
    path = folder / f"{name}.yaml"
    write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path


def write_run_tasks(run_dir: Path, held_out_texts: list[str], split: str) -> Path:
    """The two generated tasks, into RUN_DIR/tasks; returns that folder (an lm-eval include path)."""
    folder = run_dir / "tasks"
    write_passage_task(
        folder,
        HELDOUT_TASK,
        passage_items(held_out_texts),
        f"continuations of passages from the run's held-out {split} documents, seed {SEED}",
    )
    write_passage_task(
        folder,
        GENERAL_TASK,
        passage_items([t.text for t in reference_topics(None)]),
        f"continuations of passages from {SOURCE}, seed {SEED}",
    )
    return folder


def write_local_task(folder: Path, name: str, rows) -> Path:
    """A shipped hub task reading `rows` from a local JSONL file instead: task NAME_local in folder/NAME_local,
    including the shipped YAML so prompts, choices and filters stay the same."""
    out = Path(folder) / f"{name}_local"
    out.mkdir(parents=True, exist_ok=True)
    data = out / "test.jsonl"
    write_atomic(data, "".join(json.dumps(dict(row)) + "\n" for row in rows))
    config = {
        "include": str((SHIPPED_TASKS_DIR / name / f"{name}.yaml").resolve()),
        "task": f"{name}_local",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
    }
    write_atomic(out / f"{name}_local.yaml", yaml.safe_dump(config, sort_keys=False))
    return out


def download_task(name: str, folder: str | Path) -> Path:
    """`climate-sft tasks download NAME DIR`: the hub data of a shipped task, saved for offline runs."""
    if name not in HUB_DATA:
        raise TaskError(f"tasks download {name}: no hub data for this task; choose from {', '.join(HUB_DATA)}")
    from datasets import load_dataset

    path, split = HUB_DATA[name]
    return write_local_task(Path(folder), name, load_dataset(path, split=split))


def task_names(given: str | None) -> list[str]:
    """`--tasks a,b` as a list; the generated tasks when not given."""
    if given is None:
        return list(DEFAULT_TASKS)
    names = [n.strip() for n in given.split(",") if n.strip()]
    if not names:
        raise TaskError(f"--tasks {given!r}: name at least one task, e.g. --tasks {HELDOUT_TASK}")
    return names


def task_manager(include_paths: list[Path], names: list[str] = ()):
    """lm-eval's task index over the shipped tasks and the given folders, and over lm-eval's own tasks only when a
    name is not found there (indexing its thousands of YAMLs takes seconds). A folder the user names must exist
    and every YAML in it must parse."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's own parser (with !function); pinned <0.5

    for folder in include_paths:
        if not folder.is_dir():
            raise TaskError(f"--tasks-dir {folder}: no such folder; give a folder of lm-eval task YAMLs")
        for path in sorted(folder.rglob("*.yaml")):
            try:
                load_yaml(path, resolve_func=False)
            except Exception as error:  # lm-eval raises whatever yaml or its own loader raised
                reason = " ".join(str(error).split())
                raise TaskError(f"{path}: not a readable task YAML ({type(error).__name__}: {reason})") from None
    paths = [str(p) for p in [SHIPPED_TASKS_DIR, *include_paths]]
    manager = TaskManager(include_path=paths, include_defaults=False)
    if all(name in manager.all_tasks for name in names):
        return manager
    return TaskManager(include_path=paths)


def check_tasks(names: list[str], manager) -> None:
    """Each named task exists and its data loads, or one line naming it."""
    from lm_eval.tasks import get_task_dict

    for name in names:
        if name not in manager.all_tasks:
            raise TaskError(f"--tasks {name}: no such task in lm-eval, the shipped tasks or --tasks-dir")
        try:
            get_task_dict([name], manager)
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TaskError(
                f"task {name}: its data did not load ({first}); for a hub dataset run "
                f"`climate-sft tasks download {name} DIR` where the hub is reachable, then --tasks-dir DIR"
            ) from None


def _per_item(output: dict) -> dict[str, dict[str, list[float]]]:
    """lm-eval's logged samples -> per task, per metric, each item's score in doc_id order."""
    per_task = {}
    for task, samples in output["samples"].items():
        ordered = sorted(samples, key=lambda s: s["doc_id"])
        per_task[task] = {m: [float(s[m]) for s in ordered] for m in METRICS if ordered and m in ordered[0]}
    return per_task


def evaluate_tasks(peft_model, tokenizer, names: list[str], manager, limit: int | None, batch_size: int) -> dict:
    """Base (adapter disabled) and fine-tuned accuracy on each task, paired by item, with bootstrap intervals."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    def run() -> dict:
        model = HFLM(pretrained=peft_model, tokenizer=tokenizer, batch_size=batch_size)
        return simple_evaluate(
            model=model, tasks=names, task_manager=manager, limit=limit, log_samples=True, bootstrap_iters=0
        )

    with peft_model.disable_adapter():
        base = _per_item(run())
    tuned = _per_item(run())
    results = {}
    for task, metrics in base.items():
        results[task] = {
            "items": len(metrics["acc"]),
            "limit": limit,
            "general": task in GENERAL_TASKS,
            **{m: accuracy_intervals(metrics[m], tuned[task][m]) for m in metrics},
        }
    return results


def accuracy_line(task: str, result: dict, threshold: float = ACCURACY_DROP_THRESHOLD) -> str:
    """One task's change in words, in the plain terms of the perplexity section."""
    acc = result["acc"]
    change = acc["change"]
    base = with_interval(acc["base"]["accuracy"], acc["base"]["interval"])
    tuned = with_interval(acc["fine_tuned"]["accuracy"], acc["fine_tuned"]["interval"])
    points = _points(change)
    numbers = f"`{task}` ({result['items']} items): accuracy {base} (base) -> {tuned} (fine-tuned), {points} points"
    if result["general"] and change["value"] < -threshold:
        return (
            f"**Forgetting:** {numbers}, a fall beyond the {threshold * 100:g}-point threshold: fine-tuning cost "
            "ability outside the corpus."
        )
    seen = distinguishable(change)
    if seen is None:
        return f"{numbers}; one item gives no interval."
    if not seen:
        return f"Not distinguishable: {numbers}; the 95 % interval of the change includes zero."
    better = change["value"] > 0
    side = "above" if better else "below"
    return f"{'Better' if better else 'Worse'} after fine-tuning: {numbers}, wholly {side} zero."


def _points(change: dict) -> str:
    """A change in accuracy as signed points with its interval: "+12.5 [+2.5, +22.5]"."""
    shown = [change["value"], *(change["interval"] or [])]
    value, *interval = (f"{x * 100:+.1f}" for x in shown)
    return value + (f" [{interval[0]}, {interval[1]}]" if interval else "")


def accuracy_table(tasks: dict | None) -> list[str]:
    """The report's "Task accuracy" section: per task, base -> fine-tuned accuracy and the paired change."""
    if not tasks or not tasks["results"]:
        return []
    limit = f", at most {tasks['limit']} items a task (--limit)" if tasks["limit"] else ""
    lines = [
        "",
        "## Task accuracy",
        "",
        f"Multiple choice by log-likelihood through lm-evaluation-harness, the base model (adapter disabled) and the "
        f"fine-tuned one on the same items{limit}; 95 % intervals from a paired bootstrap over items. "
        f"`{HELDOUT_TASK}` picks the true continuation of a passage of the run's held-out documents among "
        f"{CHOICES}; `{GENERAL_TASK}` does the same on {SOURCE} (forgetting). Chance is 1 in {CHOICES}.",
        "",
        "| task | items | accuracy, base | accuracy, fine-tuned | change (points) | acc_norm base -> fine-tuned |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task, result in tasks["results"].items():
        acc, norm = result["acc"], result.get("acc_norm")
        normed = f"{norm['base']['accuracy']:.2f} -> {norm['fine_tuned']['accuracy']:.2f}" if norm else ""
        lines.append(
            f"| {task} | {result['items']} | {with_interval(acc['base']['accuracy'], acc['base']['interval'])} | "
            f"{with_interval(acc['fine_tuned']['accuracy'], acc['fine_tuned']['interval'])} | "
            f"{_points(acc['change'])} | {normed} |"
        )
    return lines
