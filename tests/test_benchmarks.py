"""The GPU benchmark's code path, run for a few steps on CPU with the tiny model, so a device call never finds
it broken. Its speed numbers mean nothing here; what it counts and records does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import train_speed


def test_train_speed_runs_every_step_of_its_path(tiny_model_dir, tiny_corpus_dir, tmp_path):
    out = tmp_path / "bench.json"
    peer = tmp_path / "peer.json"
    peer.write_text(json.dumps({"results": [{"variant": "unsloth", "batch": 2, "status": "skipped: no GPU"}]}))
    cpu = [
        "--use_cpu true",
        "--fp16 false",
        "--bf16 false",
        "--dtype float32",
        "--max_length 64",
        "--use_liger_kernel false",
    ]
    train_speed.main(
        [
            "--model",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus_dir),
            "--variant",
            "naive:1,2",
            "--variant",
            "seed:2",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--max-length",
            "64",
            "--workdir",
            str(tmp_path),
            "--out",
            str(out),
            "--include",
            str(peer),
            *[x for o in cpu for x in ("--override", o)],
        ]
    )
    record = json.loads(out.read_text())
    assert [(r["variant"], r["batch"], r["status"][:5]) for r in record["results"]] == [
        ("naive", 1, "ok"),
        ("naive", 2, "ok"),
        ("seed", 2, "ok"),
        ("unsloth", 2, "skipp"),
    ]
    naive1, naive2, seed = record["results"][:3]
    for r in (naive1, naive2, seed):
        assert 0 < r["tokens_per_step"] <= 64 * r["batch"]  # real tokens of `batch` packed rows of 64
        assert len(r["losses"]) == 3 and r["tokens_per_s"] > 0
    assert naive1["attn_implementation"] == "sdpa" and seed["attn_implementation"] == "varlen"
    assert record["memory_cap"] is None and "command" in record and "/tmp" not in record["model"]


def test_a_step_over_the_time_cap_ends_the_sweep(tiny_model_dir, tiny_corpus_dir, tmp_path):
    out = tmp_path / "bench.json"
    train_speed.main(
        [
            "--model",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus_dir),
            "--variant",
            "naive:1,2",
            "--warmup",
            "0",
            "--steps",
            "3",
            "--max-length",
            "64",
            "--step-time-cap",
            "1e-9",
            "--workdir",
            str(tmp_path),
            "--out",
            str(out),
            *[x for o in ("--use_cpu true", "--bf16 false", "--dtype float32") for x in ("--override", o)],
        ]
    )
    results = json.loads(out.read_text())["results"]
    assert [(r["batch"], r["status"]) for r in results] == [(1, "too slow")]
    assert len(results[0]["losses"]) == 1  # stopped after the first step


def test_an_unknown_variant_stops_before_any_work(tmp_path):
    with pytest.raises(SystemExit):
        train_speed.main(["--model", "m", "--corpus", "c", "--variant", "nope:1", "--out", str(tmp_path / "o.json")])


def _round3_variants() -> list[str]:
    """The variants `gpu_session.sh round3` asks for, read off the script itself."""
    script = (Path(__file__).parents[1] / "benchmarks" / "gpu_session.sh").read_text()
    block = script[script.index("ROUND3_SPEED=(") : script.index("round3_plan() {")]
    return re.findall(r"--variant ([\w:,]+)", block)


def test_round3_variants_load_before_a_device_call(capsys):
    specs = _round3_variants()
    names = {spec.partition(":")[0] for spec in specs}
    assert {"fast", "fp8", "bf16_base", "fast_offload_overlapped"} <= names <= set(train_speed.VARIANTS)
    train_speed.main(["--check-variants", "--override", "--bf16 false", *[x for s in specs for x in ("--variant", s)]])
    printed = capsys.readouterr().out
    assert printed.count("\n") == len(specs) and "fp8=tensorwise" in printed and "offload=True" in printed
    # control: a mistyped flag value stops the check with the variant named
    with pytest.raises(SystemExit, match="variant fp8: .*rowise"):
        train_speed.main(["--check-variants", "--variant", "fp8:1", "--override", "--fp8_scaling rowise"])


def test_round3_levers_run_through_the_benchmark_path(tiny_model_dir, tiny_corpus_dir, tmp_path):
    out = tmp_path / "bench.json"
    cpu = ["--use_cpu true", "--bf16 false", "--dtype float32", "--use_liger_kernel false", "--load_in_4bit false"]
    train_speed.main(
        ["--model", str(tiny_model_dir), "--corpus", str(tiny_corpus_dir), "--variant", "fp8:2"]
        + ["--variant", "fast_fused_lora:2", "--warmup", "0", "--steps", "1", "--max-length", "64"]
        + ["--workdir", str(tmp_path), "--out", str(out), *[x for o in cpu for x in ("--override", o)]]
    )
    fp8, fused = json.loads(out.read_text())["results"]
    assert fp8["status"] == fused["status"] == "ok"
    assert fp8["kernel_levers"]["fp8_base_weights"]["layers"] > 0 and fp8["kernel_levers"]["fused_lora_layers"] > 0
    assert "fp8_base_weights" not in fused["kernel_levers"] and fused["kernel_levers"]["fused_lora_layers"] > 0


def _write_run(folder, losses, weights=None, **stats):
    """A finished run's folder as the trainer leaves it: training_stats.json and the adapter's safetensors."""
    from safetensors.torch import save_file

    folder.mkdir()
    record = {"losses": [{"step": i + 1, "loss": loss} for i, loss in enumerate(losses)], **stats}
    (folder / "training_stats.json").write_text(json.dumps(record))
    if weights is not None:
        save_file(weights, folder / "adapter_model.safetensors")
    return folder


def test_compare_runs_tells_equal_runs_from_different_ones(tmp_path, capsys):
    import torch

    from benchmarks.compare_runs import agree, compare_runs, main

    weights = {"lora_A": torch.ones(4, 8), "lora_B": torch.zeros(8, 4)}
    reference = _write_run(tmp_path / "ref", [2.0, 1.5, 1.25], weights)
    same = _write_run(tmp_path / "same", [2.0, 1.5, 1.25 + 1e-7], {k: v.clone() for k, v in weights.items()})
    loss_off = _write_run(tmp_path / "loss_off", [2.0, 1.5, 1.2505], weights)
    weight_off = _write_run(tmp_path / "weight_off", [2.0, 1.5, 1.25], {**weights, "lora_B": torch.full((8, 4), 1e-3)})
    short = _write_run(tmp_path / "short", [2.0, 1.5], weights)
    renamed = _write_run(tmp_path / "renamed", [2.0, 1.5, 1.25], {"lora_A": weights["lora_A"]})

    def verdict(other, **tolerances):
        tolerances = {"loss_atol": 1e-5, "loss_rtol": 0.0, "weight_atol": 1e-6, **tolerances}
        return agree(compare_runs(reference, other), **tolerances)

    assert verdict(same)
    assert not verdict(loss_off) and verdict(loss_off, loss_rtol=1e-3)  # 0.0005 on 1.25: 4e-4 relative
    assert not verdict(weight_off) and verdict(weight_off, weight_atol=2e-3)
    assert not verdict(short) and not verdict(renamed)
    assert compare_runs(reference, weight_off)["max_weight_difference"] == pytest.approx(1e-3)

    assert main([str(reference), str(same)]) == 0 and main([str(reference), str(loss_off)]) == 1
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["agree"] is False and line["max_loss_difference"] == pytest.approx(5e-4)


def _stats(world_size, accumulation, steady, batch=4, effective=8, allocated=10.0):
    return dict(
        recipe="r.yaml",
        model="m",
        max_length=2048,
        precision="bf16",
        world_size=world_size,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        effective_batch_size=effective,
        this_segment={"steps": 20, "warmup_steps_excluded": 3, "steady_tokens_per_second": steady},
        peak_gpu_memory_allocated_gb=allocated,
        peak_gpu_memory_reserved_gb=allocated + 1,
    )


def test_scaling_table_computes_per_gpu_speed_and_efficiency(tmp_path, capsys):
    from benchmarks.scaling_table import main, scaling_rows

    rows = scaling_rows(
        _stats(1, 2, 30_000.0), {"ddp": _stats(2, 1, 57_000.0), "zero3": _stats(2, 1, 42_000.0, allocated=6.0)}
    )
    assert [(r["run"], r["gpus"], r["tokens_per_s_per_gpu"], r["scaling_efficiency"]) for r in rows] == [
        ("one GPU", 1, 30_000, 1.0),
        ("ddp", 2, 28_500, 0.95),
        ("zero3", 2, 21_000, 0.7),
    ]
    assert rows[1]["speedup"] == 1.9 and rows[2]["peak_allocated_gb"] == 6.0 and rows[2]["steps_timed"] == 17

    one, ddp = (
        _write_run(tmp_path / n, [1.0], **s)
        for n, s in (("one", _stats(1, 2, 30_000.0)), ("ddp", _stats(2, 1, 57_000.0)))
    )
    main(["--one-gpu", str(one), "--run", f"ddp={ddp}", "--out", str(tmp_path / "table.json")])
    assert "| ddp | 2 | 4 x 1 | 57,000 | 28,500 | 1.90x | 95.0% | 10.0 / 11.0 GB |" in capsys.readouterr().out
    assert json.loads((tmp_path / "table.json").read_text())["rows"][1]["scaling_efficiency"] == 0.95


def test_scaling_table_refuses_runs_with_another_micro_batch():
    from benchmarks.scaling_table import scaling_rows

    with pytest.raises(SystemExit, match="ddp: per_device_train_batch_size is 8, the one-GPU run's 4"):
        scaling_rows(_stats(1, 2, 30_000.0), {"ddp": _stats(2, 1, 60_000.0, batch=8, effective=16)})


def test_reload_check_scores_a_saved_adapter_as_the_run_did(tiny_recipe, tmp_path, monkeypatch, capsys):
    """The check the GPU session runs on sharded adapters, on a CPU run: the reloaded adapter's eval loss is the
    one the run recorded at its last step."""
    from benchmarks import reload_check
    from climate_sft import train

    train.run(str(tiny_recipe(max_steps=4, eval_strategy="steps", eval_steps=4, learning_rate=1e-2)), [])
    monkeypatch.setattr("sys.argv", ["reload_check", str(tmp_path / "run")])
    reload_check.main()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["relative_difference"] < 1e-5, line
