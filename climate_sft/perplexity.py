"""Stage 6: perplexity of a loaded causal LM (an adapter included) over whole documents.

Perplexity = exp(total negative log-likelihood / total predicted tokens): every token weighs the same,
however long its document. A document longer than `max_length` is read with a sliding window that moves
by `stride`; each token is scored once, with at least `max_length - stride` tokens of left context (or all
there are). Windows are batched with padding, and explicit position ids and an attention mask make the result
independent of batch composition and padding side. The first token of a document has no context and is not
scored; tokenizers that add a BOS token give it that context.

`climate_sft/metrics/perplexity/` wraps this as an `evaluate` metric (`evaluation.py` loads it by path).
"""

import math

import torch
from tqdm import tqdm


def windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, scored) per window: tokens [start, end) are read, the last `scored` of them are scored."""
    spans, scored_until = [], 1  # token 0 has no context
    for start in range(0, max(1, n_tokens - 1), stride):
        end = min(start + max_length, n_tokens)
        if end > scored_until:
            spans.append((start, end, end - scored_until))
            scored_until = end
        if end == n_tokens:
            break
    return spans


def perplexity(texts, model, tokenizer, max_length, stride=None, batch_size=8, padding_side="right") -> dict:
    """exp(total NLL / total scored tokens) over `texts`, and the same per document (see the module docstring)."""
    stride = stride or max(1, max_length // 2)
    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), got {stride}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device

    jobs = []  # (document index, token ids of the window, tokens scored at its end)
    for doc, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        jobs += [(doc, ids[a:b], scored) for a, b, scored in windows(len(ids), max_length, stride)]
    # Long windows first, so the batch holding the longest is the first to run (fails fast on memory).
    jobs.sort(key=lambda job: -len(job[1]))

    nll = [0.0] * len(texts)
    counts = [0] * len(texts)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in tqdm(range(0, len(jobs), batch_size), desc="perplexity", unit="batch", disable=None):
            batch = jobs[i : i + batch_size]
            width = max(len(ids) for _, ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (_, ids, _) in enumerate(batch):
                cols = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
                input_ids[row, cols] = torch.tensor(ids)
                mask[row, cols] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=False,  # a cache would let windows of one batch see each other's keys
            ).logits.float()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
            token_nll = -log_probs.gather(-1, input_ids[:, 1:, None].to(device))[..., 0].double().cpu()
            for row, (doc, ids, scored) in enumerate(batch):
                end = width if padding_side == "left" else len(ids)  # one past the row's last real token
                # column j of token_nll scores token j + 1
                nll[doc] += float(token_nll[row, end - scored - 1 : end - 1].sum())
                counts[doc] += scored
    model.train(was_training)

    total_nll, total_tokens = sum(nll), sum(counts)
    return {
        "perplexity": math.exp(total_nll / total_tokens),
        "mean_nll": total_nll / total_tokens,
        "total_nll": total_nll,
        "tokens": total_tokens,
        "documents": len(texts),
        "per_document": [
            {"tokens": n, "nll": s, "perplexity": math.exp(s / n) if n else None} for s, n in zip(nll, counts)
        ],
    }
