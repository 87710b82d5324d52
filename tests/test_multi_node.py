"""Two machines on one host, on CPU (gloo): the README's multi-node command, and a 2-process run killed and resumed.

Each "machine" is one `accelerate launch --num_machines 2 --machine_rank R --main_process_ip 127.0.0.1` with one
process; together they must train exactly what one launch of two processes trains, for DDP (multi_gpu.yaml: the
recipe's use_cpu puts it on gloo) and DeepSpeed ZeRO-2 (whose config's `deepspeed_multinode_launcher: standard`
starts torchrun on each machine instead of pdsh over ssh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import complete_checkpoints, free_port, kill_after_checkpoints, recipe_maker
from safetensors.torch import load_file

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
    # accelerate runs FSDP on CPU as plain DDP; tests/fsdp_on_cpu.py is climate_sft.train with FSDP kept on
    command += ["tests/fsdp_on_cpu.py"] if config == "fsdp" else ["-m", "climate_sft.train"]
    command += ["--config", str(recipe), "--output_dir", str(output_dir)]
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


# FSDP2 + LoRA: a resumed run must give every rank back its own slice of the adapter. accelerate's FULL_STATE_DICT
# path once restored rank 0's slice alone, leaving the others at their initial values
# (https://github.com/huggingface/accelerate/pull/4206, merged 2026-09, in the pinned accelerate 1.15); our
# fsdp.yaml checkpoints SHARDED_STATE_DICT through torch.distributed.checkpoint, one file per rank, and with the
# pinned accelerate, transformers and peft every rank reads its own file back: this test shows it. (A trial with
# FULL_STATE_DICT wrote whole tensors, but its resume hung on CPU after loading the model; not tested.)
FSDP_MODEL = "pytorch_model_fsdp_0"  # accelerate's folder for the model's sharded checkpoint


def adapter_slices_by_rank(checkpoint: Path) -> dict[str, dict[int, tuple]]:
    """For each adapter tensor in a sharded FSDP checkpoint: the rows each rank's file holds, and where in it."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(checkpoint / FSDP_MODEL).read_metadata()
    slices: dict[str, dict[int, tuple]] = {}
    for index, storage in metadata.storage_data.items():
        rank = int(storage.relative_path.removeprefix("__").split("_")[0])
        chunk = next(c for c in metadata.state_dict_metadata[index.fqn].chunks if c.offsets == index.offset)
        rows = (chunk.offsets[0], chunk.offsets[0] + chunk.sizes[0])
        name = index.fqn.removeprefix("model.")  # accelerate saves the state dict under "model"
        slices.setdefault(name, {})[rank] = (rows, storage.offset, storage.length)
    return slices


def adapter_tensors(checkpoint: Path, folder: Path) -> dict:
    """The whole adapter tensors of a sharded checkpoint, read in this one process."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(checkpoint / FSDP_MODEL, folder / "adapter.pt")
    return torch.load(folder / "adapter.pt", weights_only=True)["model"]


def test_fsdp_lora_run_killed_and_resumed_restores_every_ranks_adapter_shard(recipe, tmp_path):
    reference = one_host("fsdp", recipe, recipe.parent / "fsdp_uninterrupted")
    resumed = recipe.parent / "fsdp_killed"
    left = kill_after_checkpoints(launch("fsdp", recipe, resumed, free_port()), resumed, count=2)
    assert len(left) >= 2 and left[-1] < MAX_STEPS and not (resumed / "training_stats.json").exists(), left
    checkpoint = resumed / f"checkpoint-{left[-1]}"

    # really sharded: every LoRA tensor is split by rows between the two ranks' files, and each rank's slice of
    # lora_B has trained away from its zero start (a rank left at init, the upstream fault, would be seen)
    slices = adapter_slices_by_rank(checkpoint)
    assert slices and all("lora_" in name for name in slices), sorted(slices)
    assert all(set(by_rank) == {0, 1} and by_rank[0][0] != by_rank[1][0] for by_rank in slices.values()), slices
    weights = adapter_tensors(checkpoint, tmp_path)
    for name, by_rank in slices.items():
        if "lora_B" in name:
            assert all(weights[name][slice(*rows)].abs().max() > 0 for rows, _, _ in by_rank.values()), name

    # the control: a copy of the killed run whose rank 1 restores rank 0's slices. The two files lay out their
    # slices alike (same tensors, same sizes, same places), so copying rank 0's file over rank 1's is exactly that
    control = recipe.parent / "fsdp_wrong_shard"
    shutil.copytree(resumed, control)
    assert all(by_rank[0][1:] == by_rank[1][1:] for by_rank in slices.values()), slices
    shutil.copyfile(
        control / checkpoint.name / FSDP_MODEL / "__0_0.distcp", control / checkpoint.name / FSDP_MODEL / "__1_0.distcp"
    )

    one_host("fsdp", recipe, resumed)  # the same command again
    assert f"resuming from {resumed}/checkpoint-{left[-1]}" in (resumed / "train.log").read_text()
    result = assert_same_run(reference, resumed)
    # the final adapter is gathered whole: lora_A has all lora_r (4) rows, not one rank's slice
    final = load_file(resumed / "adapter_model.safetensors")
    assert all(t.shape[0] == 4 for name, t in final.items() if "lora_A" in name), {k: t.shape for k, t in final.items()}

    one_host("fsdp", recipe, control)
    wrong = compare_runs(reference, control)
    assert not agree(wrong, loss_atol=1e-5, loss_rtol=0, weight_atol=1e-6), wrong
    assert wrong["max_loss_difference"] > 100 * max(result["max_loss_difference"], 1e-6), (wrong, result)
