"""`climate-sft train` starts accelerate itself: config and process count from the visible GPUs, or as given."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from climate_sft import UserError
from climate_sft.launch import launch_command, take_launch_flags


def _config_and_processes(command: list[str]) -> tuple[str, int]:
    return command[command.index("--config_file") + 1], int(command[command.index("--num_processes") + 1])


@pytest.mark.parametrize(
    "gpus, config, num_processes, expected",
    [
        (0, None, None, ("cpu.yaml", 1)),
        (1, None, None, ("single_h100.yaml", 1)),
        (4, None, None, ("multi_gpu.yaml", 4)),
        (8, "fsdp", None, ("fsdp.yaml", 8)),
        (8, "deepspeed_zero3.yaml", 2, ("deepspeed_zero3.yaml", 2)),
        (4, "single_h100", None, ("single_h100.yaml", 1)),  # a one-process config stays one process
    ],
)
def test_process_count_follows_the_visible_gpus(gpus, config, num_processes, expected):
    command = launch_command("climate_sft.train", ["--config", "r.yaml"], config, num_processes, gpus)
    path, processes = _config_and_processes(command)
    assert (path.rsplit("/", 1)[-1], processes) == expected
    assert command[-4:] == ["-m", "climate_sft.train", "--config", "r.yaml"]


def test_own_config_file_and_flags_are_taken_off_the_line(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU"}))
    config, processes, rest = take_launch_flags(["--config", "r.yaml", "--accelerate_config", str(own), "--lr", "1"])
    assert (config, processes, rest) == (str(own), None, ["--config", "r.yaml", "--lr", "1"])
    assert _config_and_processes(launch_command("m", rest, config, processes, 2)) == (str(own), 2)
    with pytest.raises(UserError, match="no such file or shipped config; shipped: cpu, deepspeed_zero2"):
        launch_command("m", [], "nope", None, 0)


def test_train_command_launches_accelerate_and_leaves_a_hub_ready_folder(tiny_recipe, tmp_path):
    """The real command on CPU: through accelerate launch, to the Trainer's standard files and a model card."""
    recipe = tiny_recipe(base_model_id="example-org/tiny-llama", max_steps=2)
    done = subprocess.run(
        [sys.executable, "-m", "climate_sft.cli", "train", "--config", str(recipe)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "launching: -m climate_sft.launch --config_file" in done.stderr
    run = tmp_path / "run"
    assert json.loads((run / "train_results.json").read_text())["train_loss"] > 0
    assert "train_runtime" in json.loads((run / "all_results.json").read_text())
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 2
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == "example-org/tiny-llama"
    card = (run / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "example-org/tiny-llama" and "climate-sft" in front["tags"]
    assert "[None]" not in card and "Perplexity: not measured yet" in card
