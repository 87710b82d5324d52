"""Task accuracy through lm-evaluation-harness: a generated task, the paired comparison, and bad tasks."""

from __future__ import annotations

import json
import random

import pytest
import torch
from helpers import PROSE

from climate_sft import UserError, task_accuracy
from climate_sft.confidence import accuracy_intervals, distinguishable

ANSWERS = ["heat", "ice", "water", "carbon"]
PLACES = ["Oslo", "Lima", "Perth", "Quito", "Dakar", "Hanoi", "Bergen", "Cusco", "Nome", "Tromso", "Apia", "Suva"]


def test_passage_items_are_the_same_for_a_seed_and_change_with_it():
    texts = [PROSE * 12, " ".join(reversed((PROSE * 8).split()))]
    first, again = task_accuracy.passage_items(texts, count=10), task_accuracy.passage_items(texts, count=10)
    assert first == again and len(first) == 10
    assert task_accuracy.passage_items(texts, count=10, seed=1) != first  # control: the seed matters
    for item in first:
        assert len(item["context"].split()) == task_accuracy.CONTEXT_WORDS
        assert len(item["choices"]) == task_accuracy.CHOICES and len(set(map(tuple, item["choices"]))) > 1
        # the true continuation is the one that follows the context in one of the texts
        assert any(f"{item['context']} {item['choices'][item['label']]}" in " ".join(t.split()) for t in texts)
    assert task_accuracy.passage_items(["too short to cut twice"]) == []


def test_paired_bootstrap_on_a_known_case():
    # ten items; the fine-tuned model fixes items 0-3 and breaks none: +40 points, every resample >= 0
    base = [0] * 4 + [1] * 3 + [0] * 3
    tuned = [1] * 4 + [1] * 3 + [0] * 3
    result = accuracy_intervals(base, tuned)
    assert result["base"]["accuracy"] == 0.3 and result["fine_tuned"]["accuracy"] == 0.7
    assert result["change"]["value"] == pytest.approx(0.4)
    low, high = result["change"]["interval"]
    assert 0 < low < 0.4 < high <= 0.8 and distinguishable(result["change"])
    # control: the same items both ways round cancel out; unpaired the interval would be wide, paired it is zero
    same = accuracy_intervals(base, base)
    assert same["change"]["interval"] == [0.0, 0.0] and not distinguishable(same["change"])
    # a swap of two items each way: change zero, interval crosses zero
    mixed = accuracy_intervals([1, 0] * 5, [0, 1] * 5)
    assert mixed["change"]["interval"][0] < 0 < mixed["change"]["interval"][1]
    assert accuracy_intervals([1], [0])["change"]["interval"] is None


def _memo_items(seed: int = 3) -> list[dict]:
    # the word that decides the answer comes last, where a two-layer random model can map it without attention
    rng = random.Random(seed)
    return [{"context": f"The reading at {place}", "choices": ANSWERS, "label": rng.randrange(4)} for place in PLACES]


def _adapter_taught(model_dir, items, answer_of):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, tie_word_embeddings=False),
        # LoRA on an untied lm_head too: a random model's logits are too flat for the inner layers alone to sharpen
        # in a few steps (a tied one would be re-tied by lm-eval under the adapter)
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]),
    )
    texts = [f"{item['context']} {answer_of(item)}" for item in items]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for row, item in zip(labels, items):  # learn the answer, not the station names
        row[: len(tokenizer(item["context"])["input_ids"])] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    return model, tokenizer


def test_an_adapter_taught_the_answers_gains_accuracy_and_one_taught_wrong_answers_does_not(
    tiny_model_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    items = _memo_items()
    task_accuracy.write_passage_task(tmp_path / "tasks", "memo_stations", items, "a memorisable test task")
    manager = task_accuracy.task_manager([tmp_path / "tasks"], ["memo_stations"])
    task_accuracy.check_tasks(["memo_stations"], manager)

    taught, tokenizer = _adapter_taught(tiny_model_dir, items, lambda item: item["choices"][item["label"]])
    right = task_accuracy.evaluate_tasks(taught, tokenizer, ["memo_stations"], manager, None, 8)["memo_stations"]
    assert right["items"] == len(items) and right["acc"]["fine_tuned"]["accuracy"] >= 0.9
    assert right["acc"]["change"]["interval"][0] > 0

    # control: taught a wrong answer for every item, the true answers are not picked more often
    wrong, _ = _adapter_taught(tiny_model_dir, items, lambda item: item["choices"][(item["label"] + 1) % 4])
    control = task_accuracy.evaluate_tasks(wrong, tokenizer, ["memo_stations"], manager, None, 8)["memo_stations"]
    assert control["acc"]["base"] == right["acc"]["base"]  # the same base model, the adapter disabled
    assert control["acc"]["change"]["value"] <= 0


def test_an_unknown_task_a_broken_yaml_and_a_missing_data_file_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "tasks"
    task_accuracy.write_passage_task(folder, "memo_stations", _memo_items(), "a test task")
    manager = task_accuracy.task_manager([folder], ["memo_stations"])
    task_accuracy.check_tasks(["memo_stations"], manager)  # control: the good task loads

    with pytest.raises(UserError, match="--tasks no_such_task: no such task") as info:  # lm-eval's own searched too
        task_accuracy.check_tasks(["no_such_task"], task_accuracy.task_manager([folder], ["no_such_task"]))
    assert "\n" not in str(info.value)

    (folder / "memo_stations.jsonl").unlink()
    with pytest.raises(UserError, match="task memo_stations: its data did not load") as info:
        task_accuracy.check_tasks(["memo_stations"], task_accuracy.task_manager([folder], ["memo_stations"]))
    assert "\n" not in str(info.value)

    (folder / "broken.yaml").write_text("task: broken\n  doc_to_text: [unclosed\n")
    with pytest.raises(UserError, match="broken.yaml: not a readable task YAML") as info:
        task_accuracy.task_manager([folder])
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="--tasks-dir .*absent: no such folder"):
        task_accuracy.task_manager([tmp_path / "absent"])


def test_generated_task_files_are_valid_lm_eval_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = task_accuracy.write_run_tasks(tmp_path, [PROSE * 8], "test")
    manager = task_accuracy.task_manager([folder], list(task_accuracy.DEFAULT_TASKS))
    task_accuracy.check_tasks(list(task_accuracy.DEFAULT_TASKS), manager)
    rows = [json.loads(line) for line in (folder / "heldout_passages.jsonl").read_text().splitlines()]
    assert rows and all(0 <= r["label"] < len(r["choices"]) for r in rows)


def test_the_shipped_climate_fever_task_reads_a_local_copy_in_the_hub_format(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # rows as `datasets.load_dataset("tdiggelm/climate_fever", split="test")` gives them (claim_label: ClassLabel)
    evidence = {"evidence_id": "Sea:1", "evidence_label": 0, "article": "Sea", "evidence": "Seas rose.", "entropy": 0.0}
    rows = [
        {"claim_id": str(i), "claim": f"Claim {i} about the sea.", "claim_label": label, "evidences": [evidence]}
        for i, label in enumerate([0, 1, 2, 3, 0])
    ]
    folder = task_accuracy.write_local_task(tmp_path / "tasks", "climate_fever", rows).parent
    manager = task_accuracy.task_manager([folder], ["climate_fever_local"])
    task_accuracy.check_tasks(["climate_fever_local"], manager)
    from lm_eval.tasks import get_task_dict

    task = get_task_dict(["climate_fever_local"], manager)["climate_fever_local"]
    docs = list(task.test_docs())
    assert [d["claim_id"] for d in docs] == ["0", "1", "2", "4"]  # the DISPUTED claim is left out
    assert task.doc_to_choice(docs[0]) == ["supported", "refuted", "unverifiable"]
    assert [task.doc_to_target(d) for d in docs] == [0, 1, 2, 0]
    assert "Claim 1 about the sea." in task.doc_to_text(docs[1])
    with pytest.raises(UserError, match="tasks download arc: no hub data"):
        task_accuracy.download_task("arc", tmp_path)
