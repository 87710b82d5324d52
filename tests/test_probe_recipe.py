"""The hostile self-probe of recipes, generated rather than listed: every key the recipe parser knows, given values
of every wrong kind, in the recipe file and on the command line.

Each case runs the check that `climate-sft train` makes before it starts any process (`cli._check_recipe`, the
same parse and preflight the launched trainer repeats) inside the command's error boundary, and asserts what the
README promises: exit status 0 or 2, no traceback, one `climate-sft train: error:` line per problem, and the
recipe file byte-identical. A key added to TRL's or this package's dataclasses is probed without editing this file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import typing
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml

from climate_sft import error_boundary
from climate_sft.cli import _check_recipe
from climate_sft.config import ARGUMENT_CLASSES, RecipeParser

# Values of each wrong kind; the file route writes them as YAML, the command line as text.
WRONG_KINDS = {
    "null": None,
    "list": [1, 2],
    "mapping": {"a": 1},
    "text": "not-a-value",
    "nan": math.nan,
    "inf": math.inf,
    "negative": -1,
    "huge": 10**30,
    "fraction": 0.5,
}
CLI_KINDS = {"nan": "nan", "inf": "inf", "-inf": "-inf", "negative": "-1", "huge": "1e30", "text": "not-a-value"}


def _keys() -> list[str]:
    parser = RecipeParser()
    keys = [key for key in parser._actions_by_key if key != "auto_batch_size"]
    declared = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    assert set(keys) <= declared | {"per_device_train_batch_size"}
    return sorted(keys)


KEYS = _keys()


def _probe(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            with error_boundary("climate-sft train"):
                _check_recipe(argv)
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue() + err.getvalue()


def _assert_clean(code: int, output: str, case: str) -> None:
    assert code in (0, 2), f"{case}: exit {code}\n{output[-1500:]}"
    assert "Traceback" not in output, f"{case}: traceback\n{output[-1500:]}"
    if code == 2:
        lines = [line for line in output.splitlines() if line.strip()]
        assert lines and all(line.startswith("climate-sft train: error: ") for line in lines), f"{case}: {output}"


@pytest.fixture(scope="module")
def base_recipe(tmp_path_factory, tiny_model_dir, tiny_corpus_dir):
    from helpers import recipe_maker

    return recipe_maker(tmp_path_factory.mktemp("probe"), tiny_model_dir, tiny_corpus_dir)


def test_every_key_with_every_wrong_kind_in_the_recipe_file(base_recipe):
    outcomes = collections.Counter()
    recipe = base_recipe()
    values = yaml.safe_load(recipe.read_text())
    for key in KEYS:
        for kind, value in WRONG_KINDS.items():
            probe = recipe.with_name("probe.yaml")
            probe.write_text(yaml.safe_dump({**values, key: value}))
            before = probe.read_bytes()
            code, output = _probe(["--config", str(probe)])
            _assert_clean(code, output, f"{key}: {kind}")
            assert probe.read_bytes() == before
            outcomes[(kind, code)] += 1
    # every kind was refused somewhere: the probe reaches the checks it means to test
    for kind in WRONG_KINDS:
        assert outcomes[(kind, 2)] > 0, kind
    # null and non-finite numbers are refused for every key that is not optional / not a number
    print(dict(sorted(outcomes.items())))


def _optional(key: str) -> bool:
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        if key in hints:
            return type(None) in typing.get_args(hints[key])
    return True


@pytest.mark.parametrize("kind", ["null", "nan", "inf"])
def test_null_and_non_finite_values_are_refused_for_every_key_that_cannot_hold_them(base_recipe, kind):
    """The generic rule, key by key: null only where the field is optional; nan and inf for no number (a text
    field may be called "nan")."""
    recipe = base_recipe()
    values = yaml.safe_load(recipe.read_text())
    probe = recipe.with_name("probe.yaml")
    numeric = {k for k in KEYS if RecipeParser()._actions_by_key[k].type in (int, float)}
    accepted = []
    for key in KEYS:
        if (kind == "null" and _optional(key)) or (kind != "null" and key not in numeric):
            continue
        probe.write_text(yaml.safe_dump({**values, key: WRONG_KINDS[kind]}))
        code, output = _probe(["--config", str(probe)])
        if code != 2:
            accepted.append(key)
    # control: a value of the right kind passes for the same recipe
    probe.write_text(yaml.safe_dump(values))
    assert _probe(["--config", str(probe)])[0] == 0
    assert not accepted, f"{kind} accepted for {accepted}"


def test_every_numeric_key_on_the_command_line(base_recipe):
    recipe = base_recipe()
    before = recipe.read_bytes()
    parser = RecipeParser()
    numeric = [k for k in KEYS if parser._actions_by_key[k].type in (int, float)]
    assert len(numeric) > 20  # TrainingArguments alone has dozens
    outcomes = collections.Counter()
    for key in numeric:
        for kind, text in CLI_KINDS.items():
            code, output = _probe(["--config", str(recipe), f"--{key}", text])
            _assert_clean(code, output, f"--{key} {text}")
            outcomes[(kind, code)] += 1
            if kind in ("nan", "inf", "-inf", "text"):
                assert code == 2, f"--{key} {text} accepted"
    assert recipe.read_bytes() == before
    print(dict(sorted(outcomes.items())))


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("lora_r: 8\n".encode("latin-1") + "# caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
        (b"\x00\x01\x02\xff" * 20, "not UTF-8 text"),
        (b"[a, b]: 1\n", "is not a name"),
        (b"? [a, b]\n: 1\n", "is not a name"),
        (b"- just\n- a list\n", "a recipe is a YAML mapping"),
        (b"", "the recipe is empty"),
    ],
    ids=["latin-1", "binary", "flow-list-key", "complex-key", "list", "empty"],
)
def test_recipe_files_that_are_not_recipes_are_one_line(tmp_path, content, fragment):
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(content)
    code, output = _probe(["--config", str(recipe)])
    assert code == 2 and fragment in output and "Traceback" not in output, output
    assert recipe.read_bytes() == content
