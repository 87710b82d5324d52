"""The GPU benchmark's code path, run for a few steps on CPU with the tiny model, so a device call never finds
it broken. Its speed numbers mean nothing here; what it counts and records does."""

from __future__ import annotations

import json

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
    import pytest

    with pytest.raises(SystemExit):
        train_speed.main(["--model", "m", "--corpus", "c", "--variant", "nope:1", "--out", str(tmp_path / "o.json")])
