"""Two machines on one host, on CPU (gloo): the README's multi-node command, and a 2-process run killed and resumed.

Each "machine" is one `accelerate launch --num_machines 2 --machine_rank R --main_process_ip 127.0.0.1` with one
process; together they must train exactly what one launch of two processes trains, for DDP (multi_gpu.yaml: the
recipe's use_cpu puts it on gloo) and DeepSpeed ZeRO-2 (whose config's `deepspeed_multinode_launcher: standard`
starts torchrun on each machine instead of pdsh over ssh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import complete_checkpoints, free_port, kill_after_checkpoints, recipe_maker

from benchmarks.compare_runs import agree, compare_runs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
MAX_STEPS = 12


def launch(config: str, recipe: Path, output_dir: Path, port: int, machine_rank: int | None = None):
    """`accelerate launch` of two processes in all: on this machine, or as machine `machine_rank` of two."""
    command = [sys.executable, "-m", "climate_sft.launch", "--config_file", f"accelerate_configs/{config}.yaml"]
    if machine_rank is None:
        command += ["--num_processes", "2", "--main_process_port", str(port)]
    else:  # the README's multi-node command, flag for flag, with the rendezvous on this host
        command += ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(machine_rank)]
        command += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    command += ["-m", "climate_sft.train", "--config", str(recipe), "--output_dir", str(output_dir)]
    log = output_dir.parent / f"{output_dir.name}-{machine_rank if machine_rank is not None else 'host'}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(*processes, timeout: float = 900) -> None:
    for process in processes:
        assert process.wait(timeout) == 0, f"launch failed: see the logs beside the run ({process.args})"


def one_host(config: str, recipe: Path, output_dir: Path) -> Path:
    finish(launch(config, recipe, output_dir, free_port()))
    return output_dir


def two_machines(config: str, recipe: Path, output_dir: Path) -> Path:
    port = free_port()
    finish(*(launch(config, recipe, output_dir, port, machine_rank=rank) for rank in (0, 1)))
    return output_dir


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_model_dir, tiny_corpus_dir) -> Path:
    folder = tmp_path_factory.mktemp("multi_node")
    make = recipe_maker(folder, tiny_model_dir, tiny_corpus_dir)
    # 2 processes x 2 rows a step, 6 steps an epoch: 12 steps cross an epoch; a checkpoint every 2 steps
    return make(max_steps=MAX_STEPS, save_strategy="steps", save_steps=2, gradient_checkpointing=False)


@pytest.fixture(scope="module")
def ddp_reference(recipe) -> Path:
    return one_host("multi_gpu", recipe, recipe.parent / "ddp_one_host")


def assert_same_run(reference: Path, other: Path) -> dict:
    result = compare_runs(reference, other)
    assert result["steps"] == MAX_STEPS, result
    assert agree(result, loss_atol=1e-5, loss_rtol=0, weight_atol=1e-6), result
    return result


def test_ddp_as_two_machines_trains_what_one_host_trains(recipe, ddp_reference):
    other = two_machines("multi_gpu", recipe, recipe.parent / "ddp_two_machines")
    stats = json.loads((other / "training_stats.json").read_text())
    assert stats["world_size"] == 2 and stats["effective_batch_size"] == 4
    assert_same_run(ddp_reference, other)


def test_deepspeed_zero2_as_two_machines_trains_what_one_host_trains(recipe):
    pytest.importorskip("deepspeed", reason="DeepSpeed is an extra: pip install -e .[deepspeed]")
    reference = one_host("deepspeed_zero2", recipe, recipe.parent / "zero2_one_host")
    other = two_machines("deepspeed_zero2", recipe, recipe.parent / "zero2_two_machines")
    assert "pdsh" not in (recipe.parent / "zero2_two_machines-0.log").read_text()
    assert_same_run(reference, other)


def test_a_two_process_run_killed_after_its_second_checkpoint_resumes_to_the_same_run(recipe, ddp_reference):
    resumed = recipe.parent / "ddp_killed"
    left = kill_after_checkpoints(launch("multi_gpu", recipe, resumed, free_port()), resumed, count=2)
    assert len(left) >= 2 and left[-1] < MAX_STEPS and not (resumed / "training_stats.json").exists(), left
    one_host("multi_gpu", recipe, resumed)  # the same command again

    assert f"resuming from {resumed}/checkpoint-{left[-1]}" in (resumed / "train.log").read_text()
    assert_same_run(ddp_reference, resumed)
    stats = json.loads((resumed / "training_stats.json").read_text())
    assert stats["segments"] == 2 and stats["steps"] - stats["this_segment"]["steps"] == left[-1]
    assert complete_checkpoints(resumed)[-1] == MAX_STEPS
