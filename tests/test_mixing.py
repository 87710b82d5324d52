"""`mix`: other corpora mixed into training by share of tokens, never repeated, never leaking held-out texts,
recorded in training_stats.json; TRL's dataset keys answered with the command that builds a corpus."""

from __future__ import annotations

import json

import pytest
from helpers import distinct_prose, recipe_maker

from climate_sft import train
from climate_sft.config import RecipeError, load_recipe, preflight
from climate_sft.corpus import build_corpus, load_corpus
from climate_sft.mixing import mix_corpora
from climate_sft.packing import encode_documents

GENERAL = "The village market opens at dawn on {n} days, and the bakers sell bread, cheese and apples."


def _corpus(tmp_path, name: str, texts: list[str], ratios=(0.6, 0.2, 0.2)):
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    # the general texts are one template with a number in it: near-duplicates of each other, kept all
    build_corpus(source, tmp_path / name, ratios=ratios, keep_near_duplicates=True)
    return str(tmp_path / name)


@pytest.fixture
def climate(tmp_path):
    return _corpus(
        tmp_path, "climate", [f"Report {i} on warming. " + distinct_prose(f"r{i}", 1 + i % 3) for i in range(6)]
    )


@pytest.fixture
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _tokens(texts, tokenizer) -> int:
    return sum(len(ids) for ids in encode_documents(texts, tokenizer))


def test_shares_are_of_tokens_and_the_run_corpus_is_taken_whole(tmp_path, climate, tokenizer):
    general = _corpus(tmp_path, "general", [GENERAL.format(n=n) for n in range(200)])
    corpus = load_corpus(climate)
    mixed, record = mix_corpora(climate, corpus, {general: 0.25}, tokenizer, seed=0)
    ours, theirs = record["sources"]
    assert ours["documents"] == ours["documents_available"] == len(corpus["train"])  # the bigger one bounds nothing
    assert ours["weight"] == 0.75 and theirs["weight"] == 0.25
    one_document = _tokens([GENERAL.format(n=0)], tokenizer) + 1
    assert abs(theirs["tokens"] - ours["tokens"] / 3) <= one_document  # 25 % of the tokens, to within a document
    assert len(mixed["train"]) == ours["documents"] + theirs["documents"] < len(corpus["train"]) + 200
    assert _tokens(mixed["train"]["text"], tokenizer) == record["tokens"] == ours["tokens"] + theirs["tokens"]
    assert mixed["test"]["id"] == corpus["test"]["id"] and mixed["validation"]["id"] == corpus["validation"]["id"]
    again, _ = mix_corpora(climate, corpus, {general: 0.25}, tokenizer, seed=0)
    assert again["train"]["id"] == mixed["train"]["id"]  # seeded


def test_a_small_corpus_is_not_repeated_the_mixture_shrinks(tmp_path, climate, tokenizer):
    # one general document to train on, fewer tokens than the run's own training documents
    general = _corpus(tmp_path, "general", [GENERAL.format(n=n) for n in range(3)])
    corpus = load_corpus(climate)
    mixed, record = mix_corpora(climate, corpus, {general: 0.5}, tokenizer, seed=0)
    ours, theirs = record["sources"]
    assert theirs["documents"] == theirs["documents_available"] and len(set(mixed["train"]["id"])) == len(
        mixed["train"]
    )
    assert ours["documents"] < ours["documents_available"]  # trimmed to keep 50 / 50
    assert theirs["tokens"] <= ours["tokens"]


def test_held_out_texts_are_never_drawn_from_another_corpus(tmp_path, climate, tokenizer):
    corpus = load_corpus(climate)
    held_out = [*corpus["test"]["text"], *corpus["validation"]["text"]]
    # all of it trains there (no held-out share), so each of the run's held-out texts is on offer
    general = _corpus(tmp_path, "general", [*held_out, *(GENERAL.format(n=n) for n in range(5))], ratios=(1, 0, 0))
    mixed, record = mix_corpora(climate, corpus, {general: 0.5}, tokenizer, seed=0)  # every document drawn
    assert not set(held_out) & set(mixed["train"]["text"])
    general_train = set(load_corpus(general)["train"]["text"])
    assert record["sources"][1]["held_out_texts_skipped"] == len(set(held_out) & general_train) > 0  # control


@pytest.mark.parametrize(
    "mix, fragment",
    [
        ({"x": 1.5}, "each share must be between 0 and 1"),
        ({"x": 0.6, "y": 0.5}, "add up to less than 1"),
        ("[a, b]", "one `corpus_folder: share` line per corpus"),
        ({"x": "lots"}, "one `corpus_folder: share` line per corpus"),
    ],
)
def test_bad_mix_values_are_one_line(tiny_recipe, mix, fragment):
    with pytest.raises(RecipeError, match=f"key 'mix': .*{fragment}"):
        load_recipe(tiny_recipe(mix=mix))


def test_mix_from_the_command_line_and_its_corpora_checked(tiny_recipe, tmp_path, tiny_corpus_dir):
    recipe = load_recipe(tiny_recipe(), ["--mix", f"{{{tmp_path / 'nope'}: 0.2}}"])
    assert recipe.data.mix == {str(tmp_path / "nope"): 0.2}
    with pytest.raises(RecipeError, match="key 'mix': .*nope holds no corpus"):
        preflight(recipe, check_modules=False)
    with pytest.raises(RecipeError, match="is mixed in already"):
        load_recipe(tiny_recipe(mix={str(tiny_corpus_dir): 0.2}))


@pytest.mark.parametrize("key", ["dataset_name", "dataset_train_split"])
def test_trl_dataset_keys_name_the_command_that_builds_a_corpus(tiny_recipe, key):
    with pytest.raises(RecipeError, match=f"key '{key}': a dataset becomes a corpus first: `climate-sft extract --"):
        load_recipe(tiny_recipe(**{key: "someone/data"}))
    with pytest.raises(RecipeError, match="extract .* --text-field body"):
        load_recipe(tiny_recipe(dataset_text_field="body"))


def test_a_mixed_run_records_its_mixture(tmp_path, climate, tiny_model_dir):
    general = _corpus(tmp_path, "general", [GENERAL.format(n=n) for n in range(60)])
    recipe = recipe_maker(tmp_path, tiny_model_dir, climate)(max_steps=2, mix={general: 0.3})
    stats = train.run(str(recipe), [])
    written = json.loads((tmp_path / "run" / "training_stats.json").read_text())
    assert written["mixture"] == stats["mixture"] and [s["weight"] for s in stats["mixture"]["sources"]] == [0.7, 0.3]
    assert stats["packing"]["train"]["tokens"] == stats["mixture"]["tokens"]  # what trained is the mixture
    trained = {d["sha256"] for d in json.loads((tmp_path / "run" / "data.json").read_text())["splits"]["train"]}
    assert len(trained) == sum(s["documents"] for s in stats["mixture"]["sources"])
    again = load_recipe(tmp_path / "run" / "recipe.yaml")  # absolute paths: loadable from anywhere
    assert again.data.mix == {str((tmp_path / "general").resolve()): 0.3}
