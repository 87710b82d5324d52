"""The GPU benchmark's code path, run for two steps on CPU with the tiny model, so a device call never
finds it broken. Its numbers mean nothing here."""

from __future__ import annotations

import json


def test_train_speed_runs_every_step_of_its_path(tiny_model_dir, tiny_corpus_dir, tmp_path):
    from climate_sft.benchmarks import train_speed

    out = tmp_path / "bench.json"
    cpu = ["--use_cpu true", "--fp16 false", "--bf16 false", "--dtype float32", "--max_length 64"]
    train_speed.main(
        ["--model", str(tiny_model_dir), "--corpus", str(tiny_corpus_dir), "--variant", "naive:1,2",
         "--variant", "seed:2", "--warmup", "1", "--steps", "2", "--max-length", "64", "--workdir", str(tmp_path),
         "--out", str(out), *[x for o in cpu for x in ("--override", o)]]
    )
    record = json.loads(out.read_text())
    assert [(r["variant"], r["batch"], r["status"]) for r in record["results"]] == [
        ("naive", 1, "ok"), ("naive", 2, "ok"), ("seed", 2, "ok")]
    for r in record["results"]:
        assert r["tokens_per_s"] > 0 and r["tokens_per_step"] > 0 and r["mfu"] >= 0
    assert record["results"][0]["attn_implementation"] == "sdpa" and record["results"][2]["attn_implementation"] == "varlen"
