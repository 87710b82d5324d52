"""Near-duplicates by MinHash (datatrove's stages): edited, re-laid-out and half-quoted copies are grouped,
different documents on the same topic are not, and eval's cross-split check finds the same pairs."""

from __future__ import annotations

import random

from helpers import distinct_prose

from climate_sft.near_duplicates import cross_split_pairs, find_groups, leaks_into_training


def _report(key: str) -> str:
    return "\n\n".join(distinct_prose(f"{key}-{p}", 3) for p in range(4))


def _edited(text: str, share: float, seed: int = 0) -> str:
    words = text.split()
    rng = random.Random(seed)
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(["warming", "sea", "heat", "carbon"])
    return " ".join(words)


def test_copies_are_grouped_and_documents_on_the_same_topic_are_not(tmp_path):
    reports = [_report(f"r{i}") for i in range(4)]  # the same prose, a third of the words drawn per report
    texts = [
        *reports,
        reports[0].replace("\n\n", "\n").replace(". ", ".\n"),  # 4: report 0 laid out differently
        _edited(reports[1], 0.03),  # 5: report 1 with 3 % of its words edited
        reports[2][: len(reports[2]) // 2] + "\n\nIn short, the findings above hold.",  # 6: quotes half of report 2
    ]
    groups = find_groups(lambda: iter(texts), tmp_path)
    assert groups == {0: 0, 4: 0, 1: 1, 5: 1, 2: 2, 6: 2}  # report 3 (the control) is in no group
    assert cross_split_pairs(texts[4:], reports) == [(0, 0), (1, 1), (2, 2)]
    assert cross_split_pairs([reports[3]], reports[:3]) == []  # control


def test_leaks_name_the_test_document_and_its_training_twin():
    train = [{"id": f"t{i}", "title": f"T{i}", "text": _report(f"t{i}")} for i in range(3)]
    test = [
        {"id": "copy", "title": "Copy", "text": _edited(train[1]["text"], 0.02)},
        {"id": "new", "title": "New", "text": _report("new")},
    ]
    assert leaks_into_training(test, train) == [{"test_id": "copy", "test_title": "Copy", "train_id": "t1"}]
    assert leaks_into_training(test[1:], train) == []  # control
