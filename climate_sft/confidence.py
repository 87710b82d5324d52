"""Stage 6b: how far to trust a perplexity: 95 % confidence intervals by a bootstrap over documents.

Test documents are the unit that varies (a corpus is a sample of documents, not of tokens), so each resample
draws documents with replacement and recomputes the token-weighted perplexity, exp(sum NLL / sum tokens),
from their per-document sums. Base and fine-tuned are resampled together (paired), so the interval of their
relative difference leaves out how hard the drawn documents happen to be, which both models share. Percentile
intervals, a fixed seed: the same numbers give the same interval.
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def _interval(values: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def _resampled_perplexity(nll: np.ndarray, tokens: np.ndarray, picks: np.ndarray) -> np.ndarray:
    return np.exp(nll[picks].sum(axis=1) / tokens[picks].sum(axis=1))


def perplexity_intervals(tokens: list[int], base_nll: list[float], tuned_nll: list[float]) -> dict:
    """Perplexity of base and fine-tuned with 95 % intervals, and the paired relative difference
    (fine-tuned / base - 1) with its interval, from per-document NLL sums and token counts. With fewer than
    two documents there is nothing to resample: the intervals are None."""
    tokens_a, base_a, tuned_a = (np.asarray(x, dtype=float) for x in (tokens, base_nll, tuned_nll))
    base = math.exp(base_a.sum() / tokens_a.sum())
    tuned = math.exp(tuned_a.sum() / tokens_a.sum())
    result = {
        "documents": len(tokens),
        "resamples": RESAMPLES,
        "seed": SEED,
        "level": LEVEL,
        "base": {"perplexity": base, "interval": None},
        "fine_tuned": {"perplexity": tuned, "interval": None},
        "relative_change": {"value": tuned / base - 1, "interval": None},
    }
    if len(tokens) < 2:
        return result
    picks = np.random.default_rng(SEED).integers(0, len(tokens), size=(RESAMPLES, len(tokens)))
    base_draws = _resampled_perplexity(base_a, tokens_a, picks)
    tuned_draws = _resampled_perplexity(tuned_a, tokens_a, picks)
    result["base"]["interval"] = _interval(base_draws)
    result["fine_tuned"]["interval"] = _interval(tuned_draws)
    result["relative_change"]["interval"] = _interval(tuned_draws / base_draws - 1)
    return result


def distinguishable(change: dict) -> bool | None:
    """Whether the interval of a difference lies wholly on one side of zero; None without an interval."""
    if change["interval"] is None:
        return None
    low, high = change["interval"]
    return low > 0 or high < 0


def with_interval(value: float, interval: list[float] | None, percent: bool = False) -> str:
    """A number and its interval as the summary and the report write them: "23.85 [18.89, 30.23]"."""
    shown = (lambda x: f"{x:+.1%}") if percent else (lambda x: f"{x:.2f}")
    return shown(value) + (f" [{shown(interval[0])}, {shown(interval[1])}]" if interval else "")


def accuracy_intervals(base_correct: list[float], tuned_correct: list[float]) -> dict:
    """Accuracy of base and fine-tuned on the same items with 95 % intervals, and the paired change (fine-tuned
    minus base, in accuracy points) with its interval: items, not documents, are the unit that varies here, and
    each resample draws the same items for both models. Fewer than two items: the intervals are None."""
    base_a, tuned_a = (np.asarray(x, dtype=float) for x in (base_correct, tuned_correct))
    result = {
        "items": len(base_a),
        "resamples": RESAMPLES,
        "seed": SEED,
        "level": LEVEL,
        "base": {"accuracy": float(base_a.mean()), "interval": None},
        "fine_tuned": {"accuracy": float(tuned_a.mean()), "interval": None},
        "change": {"value": float(tuned_a.mean() - base_a.mean()), "interval": None},
    }
    if len(base_a) < 2:
        return result
    picks = np.random.default_rng(SEED).integers(0, len(base_a), size=(RESAMPLES, len(base_a)))
    base_draws, tuned_draws = base_a[picks].mean(axis=1), tuned_a[picks].mean(axis=1)
    result["base"]["interval"] = _interval(base_draws)
    result["fine_tuned"]["interval"] = _interval(tuned_draws)
    result["change"]["interval"] = _interval(tuned_draws - base_draws)
    return result
