"""Perplexity of a loaded causal LM (an adapter included) over whole documents, as an `evaluate` metric.

`evaluate.load("perplexity")` needs the hub and reloads the model from an id, so it cannot score a model in
memory with a LoRA adapter on it. This module is loaded by path and scores the model it is given; the
computation is `climate_sft.perplexity.perplexity` (token-weighted, sliding window, padding-independent):

    metric = evaluate.load("climate_sft/metrics/perplexity")
    metric.compute(predictions=texts, model=model, tokenizer=tokenizer, max_length=2048, stride=1024)
"""

import datasets
import evaluate

from climate_sft.perplexity import perplexity

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the documents to score.
    model: a loaded causal LM (transformers or PEFT), in eval mode or not.
    tokenizer: its tokenizer.
    max_length (int): tokens per window.
    stride (int): tokens the window moves by; defaults to max_length // 2.
    batch_size (int): windows per forward pass.
    padding_side (str): "right" or "left"; the result does not depend on it.
Returns:
    perplexity, mean_nll (nats per token), total_nll, tokens (scored), documents, per_document (list of
    {"tokens", "nll", "perplexity"}).
"""


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, model, tokenizer, max_length, stride=None, batch_size=8, padding_side="right"):
        return perplexity(predictions, model, tokenizer, max_length, stride, batch_size, padding_side)
