"""Every accelerate config loads, names a valid distributed type, and leaves the process count to the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = sorted((Path(__file__).parents[1] / "accelerate_configs").glob("*.yaml"))
EXPECTED = {
    "cpu": DistributedType.NO,
    "single_h100": DistributedType.NO,
    "multi_gpu": DistributedType.MULTI_GPU,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
    "deepspeed_zero3": DistributedType.DEEPSPEED,
    "fsdp": DistributedType.FSDP,
}


def test_every_expected_config_is_shipped():
    assert {c.stem for c in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_loads_with_a_valid_distributed_type(path):
    config = load_config_from_file(str(path))
    assert config.distributed_type == EXPECTED[path.stem]
    raw = yaml.safe_load(path.read_text())
    assert path.read_text().startswith("#") and "accelerate launch --config_file" in path.read_text()
    if config.distributed_type != DistributedType.NO:
        assert "num_processes" not in raw, "one process per GPU comes from --num_processes, not the file"
    if config.distributed_type == DistributedType.DEEPSPEED:
        # hard-coded batch sizes break DeepSpeed's train_batch_size check when the process count changes
        assert raw["deepspeed_config"]["gradient_accumulation_steps"] == "auto"
    assert raw.get("mixed_precision") == "no", "precision comes from the recipe's fp16/bf16 keys"
    # the user's CUDA_VISIBLE_DEVICES decides the GPUs: gpu_ids other than "all" would override it
    assert raw.get("gpu_ids", "all") == "all"
    if config.distributed_type == DistributedType.DEEPSPEED:
        # without it a multi-node launch falls back to pdsh and the README's command does not work
        assert raw["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
        assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"
    if config.distributed_type == DistributedType.FSDP:
        # accelerate wraps the model's own _no_split_modules; a class name would tie the config to Llama
        assert "fsdp_transformer_layer_cls_to_wrap" not in raw["fsdp_config"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_config_trains_through_accelerate_launch_on_cpu(name, tiny_recipe, tmp_path):
    """One process on CPU: the launch path, the config and the training entry point fit together."""
    pytest.importorskip("deepspeed") if "deepspeed" in name else None
    recipe = tiny_recipe(attn_implementation=None, save_strategy="steps", save_steps=3)
    command = [
        sys.executable,
        "-m",
        "climate_sft.launch",
        "--config_file",
        f"accelerate_configs/{name}.yaml",
        "--num_processes",
        "1",
        "-m",
        "climate_sft.train",
        "--config",
        str(recipe),
    ]
    subprocess.run(command, check=True, capture_output=True, cwd=Path(__file__).parents[1])
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
