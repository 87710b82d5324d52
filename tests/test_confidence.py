"""Bootstrap intervals over documents, on hand-made cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from climate_sft.confidence import distinguishable, perplexity_intervals


def test_two_documents_give_the_known_percentile_interval():
    # Equal lengths, per-token NLL 1 and 3: a resample draws (a, a), (a, b), (b, a) or (b, b), so a quarter of
    # resamples score e^1, a half e^2, a quarter e^3; the 2.5th and 97.5th percentiles are e^1 and e^3.
    result = perplexity_intervals([100, 100], [100.0, 300.0], [100.0, 300.0])
    assert result["base"]["perplexity"] == pytest.approx(math.e**2)
    assert result["base"]["interval"] == pytest.approx([math.e, math.e**3])
    # the same model twice: every paired draw changes nothing, so the interval of the change is [0, 0]
    assert result["relative_change"]["value"] == pytest.approx(0.0)
    assert result["relative_change"]["interval"] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_a_uniform_gain_per_token_is_the_whole_interval_of_the_paired_change():
    # Documents that differ a lot in difficulty, each lowered by 0.2 nats per token: the documents drawn change
    # both perplexities, but never their ratio, so the paired interval collapses onto exp(-0.2) - 1.
    tokens = [50, 400, 120, 900, 30]
    base = [n * h for n, h in zip(tokens, [1.0, 2.5, 3.5, 2.0, 4.0])]
    tuned = [b - 0.2 * n for b, n in zip(base, tokens)]
    result = perplexity_intervals(tokens, base, tuned)
    expected = math.exp(-0.2) - 1
    assert result["relative_change"]["value"] == pytest.approx(expected)
    assert result["relative_change"]["interval"] == pytest.approx([expected, expected])
    assert distinguishable(result["relative_change"]) is True
    low, high = result["base"]["interval"]
    assert high / low > 2  # while each model's own interval is wide: the documents differ
    assert low <= result["base"]["perplexity"] <= high


def test_a_gain_on_some_documents_and_a_loss_on_others_is_not_distinguishable():
    tokens = [200] * 6
    base = [2.0 * n for n in tokens]
    tuned = [b + d * n for b, n, d in zip(base, tokens, [-0.3, 0.3, -0.2, 0.25, -0.1, 0.1])]
    change = perplexity_intervals(tokens, base, tuned)["relative_change"]
    assert change["interval"][0] < 0 < change["interval"][1]
    assert distinguishable(change) is False


def test_more_documents_of_the_same_kind_narrow_the_interval_as_one_over_root_n():
    rng = np.random.default_rng(1)
    tokens = list(rng.integers(100, 400, size=25))
    base = [n * h for n, h in zip(tokens, rng.uniform(1.5, 3.5, size=25))]
    few = perplexity_intervals(tokens, base, base)["base"]["interval"]
    many = perplexity_intervals(tokens * 4, base * 4, base * 4)["base"]["interval"]  # same spread, 4x documents
    ratio = (math.log(many[1]) - math.log(many[0])) / (math.log(few[1]) - math.log(few[0]))
    assert 0.4 < ratio < 0.6  # 1 / sqrt(4) = 0.5, up to resampling noise


def test_one_document_has_no_interval_and_the_result_is_repeatable():
    single = perplexity_intervals([10], [20.0], [15.0])
    assert single["base"]["interval"] is None and single["relative_change"]["interval"] is None
    assert distinguishable(single["relative_change"]) is None
    assert single["relative_change"]["value"] == pytest.approx(math.exp(1.5) / math.exp(2.0) - 1)
    args = ([30, 40, 50], [60.0, 100.0, 90.0], [55.0, 90.0, 95.0])
    assert perplexity_intervals(*args) == perplexity_intervals(*args)
