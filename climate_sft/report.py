"""Stage 7: a run folder's own files -> REPORT.md with plots, answering the user's questions in numbers.

    climate-sft report RUN_DIR

Reads recipe.yaml, training_stats.json and (when `climate-sft eval` ran) eval_results.json. Nothing in the
report is typed by hand: the techniques come from the resolved recipe, the numbers from the measurements,
and the interpretation from rules over those numbers (`interpret`).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from climate_sft import UserError
from climate_sft.confidence import with_interval
from climate_sft.corpus import CorpusError
from climate_sft.files import atomic_output, file_sha256, read_mapping, write_atomic
from climate_sft.task_accuracy import accuracy_line, accuracy_table

# Fewer test documents than this, and the report says the intervals speak for those documents more than a field.
FEW_DOCUMENTS = 10
# Perplexity changes smaller than this are within what run-to-run noise moves on a few test documents.
NOISE = 0.01


# What to do about each file of a run that report reads, when it is damaged.
REMEDY = {
    "training_stats.json": "rerun the same `climate-sft train` command (it resumes and rewrites it)",
    "recipe.yaml": "rerun the same `climate-sft train` command (it rewrites it)",
    "eval_results.json": "rerun `climate-sft eval RUN_DIR`",
    "samples.json": "rerun `climate-sft eval RUN_DIR` (or `climate-sft generate RUN_DIR --samples 3`)",
}


def _load(run_dir: Path, name: str) -> dict | None:
    return read_mapping(run_dir / name, REMEDY[name].replace("RUN_DIR", str(run_dir)), required=False)


def check_evaluation_is_current(run_dir: Path, evaluation: dict | None) -> None:
    """Perplexities measured on an earlier adapter must not be reported beside the numbers of a longer run."""
    measured = (evaluation or {}).get("adapter_sha256")
    adapter = run_dir / "adapter_model.safetensors"
    if measured and adapter.is_file() and file_sha256(adapter) != measured:
        raise UserError(
            f"{run_dir / 'eval_results.json'} was measured on an earlier adapter (the run has trained further since): "
            f"rerun `climate-sft eval {run_dir}`, then `climate-sft report {run_dir}`"
        )


def techniques(recipe: dict, stats: dict) -> list[str]:
    """The memory and speed techniques this run actually used, read from its resolved recipe."""
    used = []
    if recipe.get("load_in_4bit"):
        kind = recipe.get("bnb_4bit_quant_type", "nf4").upper()
        nested = " with double quantization" if recipe.get("use_bnb_nested_quant") else ""
        used.append(f"4-bit {kind} base weights{nested} (QLoRA), compute in {recipe.get('dtype', 'float32')}")
    elif recipe.get("load_in_8bit"):
        used.append("8-bit base weights")
    if recipe.get("use_peft"):
        targets = recipe.get("lora_target_modules") or "the default modules"
        targets = ", ".join(targets) if isinstance(targets, list) else targets
        used.append(f"LoRA r={recipe.get('lora_r')} alpha={recipe.get('lora_alpha')} on {targets} (adapters in fp32)")
    used.append(f"{stats['precision']} {'mixed ' if stats['precision'] != 'fp32' else ''}precision")
    if recipe.get("gradient_checkpointing", True):
        used.append("gradient checkpointing")
    if recipe.get("optim"):
        used.append(f"optimizer {recipe['optim']}")
    if stats.get("packing_strategy"):
        used.append(f"packing ({stats['packing_strategy']}) into rows of {stats['max_length']} tokens")
    if stats.get("attn_implementation"):
        used.append(f"attention: {stats['attn_implementation']}")
    if recipe.get("use_liger_kernel"):
        used.append("Liger kernels (RMSNorm, SwiGLU, RoPE)")
    levers = stats.get("kernel_levers") or {}
    if levers.get("fp8_base_weights"):
        fp8 = levers["fp8_base_weights"]
        used.append(f"fp8 (e4m3, {fp8['scaling']}) base weights in {fp8['layers']} layers: {fp8['gemm']}")
    if levers.get("fused_lora_layers"):
        used.append(f"fused LoRA forward in {levers['fused_lora_layers']} layers")
    if levers.get("flash_attention_impl"):
        used.append(f"FlashAttention build {levers['flash_attention_impl']}")
    return used


def interpret(stats: dict, evaluation: dict | None) -> list[str]:
    """Plain-words reading of the numbers."""
    lines = []
    if evaluation:
        lines.append(perplexity_change(evaluation))
        if evaluation.get("general_text"):
            lines.append(forgetting(evaluation["general_text"]))
        if tasks := evaluation.get("tasks"):
            lines += [
                accuracy_line(task, result, tasks["accuracy_drop_threshold"])
                for task, result in tasks["results"].items()
            ]
        ratio = stats["tokens_seen"] / max(1, evaluation["tokens"])
        lines.append(
            f"The run trained on {stats['tokens_seen']:,} tokens ({stats['epochs']} epochs). Gains on a corpus this "
            "size come mostly from the corpus's vocabulary, style and layout quirks rather than new knowledge; "
            f"the test set is {ratio:.0f} times smaller than what was trained on, so its number is indicative."
        )
    evals = [e["eval_loss"] for e in stats.get("eval_losses", [])]
    if len(evals) >= 2:
        last, previous, best = evals[-1], evals[-2], min(evals)
        if last > best * (1 + NOISE):
            lines.append(
                f"Validation loss rose from its best {best:.3f} to {last:.3f}: the adapter is starting to overfit; "
                "more data would help more than more epochs, or stop earlier."
            )
        elif last < previous * (1 - NOISE):
            lines.append(
                f"Validation loss was still falling at the end ({previous:.3f} -> {last:.3f}): more training "
                "(another epoch) or more documents would likely lower perplexity further."
            )
        else:
            lines.append(
                f"Validation loss has levelled off ({previous:.3f} -> {last:.3f}): more epochs would add little; "
                "more documents are the way to further gains."
            )
    elif not evals:
        lines.append("No validation loss was logged (eval_strategy: no), so the trend cannot be judged.")
    return lines


def perplexity_change(evaluation: dict) -> str:
    """The change in test perplexity in words; "not distinguishable" when its 95 % interval crosses zero."""
    before, after = evaluation["base"]["perplexity"], evaluation["fine_tuned"]["perplexity"]
    change, interval = evaluation["relative_change"], evaluation.get("relative_change_interval")
    where = f"on {evaluation['documents']} held-out document(s) ({evaluation['tokens']} tokens)"
    base, tuned = (
        with_interval(evaluation[k]["perplexity"], evaluation[k].get("interval")) for k in ("base", "fine_tuned")
    )
    if interval and interval[0] <= 0 <= interval[1]:
        return (
            f"Not distinguishable: {where} perplexity went from {base} to {tuned}, a change of "
            f"{with_interval(change, interval, percent=True)}; the 95 % interval of the change includes zero, so these "
            "documents cannot tell the fine-tuned model from the base model."
        )
    if interval is None and abs(change) < NOISE:
        return (
            f"No measurable change: {where} perplexity went from {before:.2f} to {after:.2f} ({change:+.1%}), "
            f"within the {NOISE:.0%} that noise moves it on so few test tokens."
        )
    alone = " With one test document there is no interval: the number rests on that document." if not interval else ""
    side = "below" if change < 0 else "above"
    spread = f"; the change is {with_interval(change, interval, percent=True)}, wholly {side} zero" if interval else ""
    if change < 0:
        return (
            f"Fine-tuning helped: {where} perplexity fell {-change:.1%}, from {base} to {tuned}{spread} (95 % "
            f"intervals). The model is now, on average, as unsure of the next token as if choosing among "
            f"{after:.1f} equally likely ones instead of {before:.1f}.{alone}"
        )
    return (
        f"Fine-tuning hurt: {where} perplexity rose {change:.1%}, from {base} to {tuned}{spread} (95 % intervals). "
        "Typical causes are a learning rate too high for this corpus or too many epochs over too little text."
        f"{alone}"
    )


def forgetting(general: dict) -> str:
    """The change on general, non-climate text in words, flagged when it rises beyond the threshold."""
    change, threshold = general["relative_change"], general["threshold"]
    numbers = (
        f"on general English text ({general['documents']} documents, {general['tokens']} tokens) perplexity went "
        f"from {general['base']['perplexity']:.2f} to {general['fine_tuned']['perplexity']:.2f} "
        f"({with_interval(change, general.get('relative_change_interval'), percent=True)})"
    )
    if change > threshold:
        return (
            f"**Forgetting:** {numbers}, a rise beyond the {threshold * 100:g} % threshold: fine-tuning cost "
            "ability on ordinary text. A lower learning rate, fewer epochs or mixing general text into training "
            "(recipe key `mix`) would limit it."
        )
    if change <= 0:
        return f"No sign of forgetting: {numbers}; it did not rise."
    return f"No sign of forgetting: {numbers}, a rise within the {threshold * 100:g} % that the report flags."


def context(evaluation: dict) -> list[str]:
    """What the perplexities can and cannot say, from this run's own evaluation."""
    tokenizer = evaluation.get("tokenizer")
    named = f"{tokenizer['class']}, {tokenizer['vocabulary']:,} tokens" if tokenizer else "the model's own"
    n = evaluation["documents"]
    lines = [
        f"Perplexity depends on the tokenizer ({named}, of `{evaluation.get('model', 'the model')}`): these numbers "
        "compare the base and fine-tuned versions of this one model, scored on the same tokens. They cannot be "
        "compared with the perplexity of another model or tokenizer, or with numbers published elsewhere.",
        f"The test split is {n} document(s), {evaluation['tokens']:,} tokens, read in windows of "
        f"{evaluation['window']} tokens moving by {evaluation['stride']}. The base number is the model as training "
        "loaded it (4-bit where the recipe quantizes it), so the change is the adapter's alone.",
    ]
    boot = evaluation.get("bootstrap")
    if n >= 2 and boot:
        lines.append(
            f"The 95 % intervals come from resampling these {n} test documents ({boot['resamples']} resamples, "
            f"seed {boot['seed']}): they show how much the result moves with the choice of documents. The change "
            "is resampled in pairs, base and fine-tuned on the same draws, so its interval leaves out how hard the "
            "drawn documents are and is narrower than either perplexity's."
            + (
                f" {n} documents are few: the intervals describe these documents more than climate text at large, "
                "and more test documents would narrow them."
                if n < FEW_DOCUMENTS
                else ""
            )
        )
    else:
        lines.append(
            "With one test document no interval can be computed: the number rests on whichever document was held "
            "out. Rebuild the corpus from more documents (8 or more give the test split at least two)."
        )
    general = evaluation.get("general_text")
    if general:
        source = general.get("source") or (
            "the bundled general texts" if general.get("bundled") else f"`{general['folder']}`"
        )
        lines.append(
            f"The general-text check uses {source}: it shows whether fine-tuning cost ability outside climate "
            "text, not how good the model is at English."
        )
    return lines


def _plot(run_dir: Path, stats: dict, evaluation: dict | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        with atomic_output(run_dir / name) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        made.append(name)

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot([x["step"] for x in stats["losses"]], [x["loss"] for x in stats["losses"]], label="training loss")
    if stats.get("eval_losses"):
        ax.plot(
            [x["step"] for x in stats["eval_losses"]],
            [x["eval_loss"] for x in stats["eval_losses"]],
            "o-",
            label="validation loss",
        )
    ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="Loss")
    ax.legend()
    save(fig, "loss.png")

    segment = stats["this_segment"]
    if segment["step_seconds"]:
        fig, ax = plt.subplots(figsize=(6.5, 3.0))
        ax.plot(
            range(1, len(segment["step_seconds"]) + 1),
            [n / s for n, s in zip(segment["step_tokens"], segment["step_seconds"])],
        )
        memory = stats.get("peak_gpu_memory_allocated_gb", stats.get("peak_rss_gb"))
        kind = "GPU memory allocated" if "peak_gpu_memory_allocated_gb" in stats else "RSS"
        ax.set(xlabel="step (this run)", ylabel="tokens / s", title=f"Throughput (peak {kind}: {memory} GB)")
        save(fig, "throughput.png")

    if evaluation:
        fig, ax = plt.subplots(figsize=(4.0, 3.0))
        values = [evaluation[k]["perplexity"] for k in ("base", "fine_tuned")]
        intervals = [evaluation[k].get("interval") for k in ("base", "fine_tuned")]
        errors = None  # no interval from a single test document
        if all(intervals):
            errors = [[v - i[0] for v, i in zip(values, intervals)], [i[1] - v for v, i in zip(values, intervals)]]
        bars = ax.bar(
            ["base", "fine-tuned"],
            values,
            color=["#999999", "#2a7ab9"],
            yerr=errors,
            capsize=6,
        )
        ax.bar_label(bars, fmt="%.2f")
        ax.set(ylabel="perplexity", title=f"Test split ({evaluation['tokens']} tokens)")
        save(fig, "perplexity.png")
    return made


def answers(samples: dict | None) -> list[str]:
    """The "Answers" section: base and fine-tuned continuations of held-out passages (samples.json)."""
    if not samples or not samples["samples"]:
        return []
    lines = [
        "",
        "## Answers",
        "",
        f"{samples['decoding'].capitalize()} continuations ({samples['max_new_tokens']} new tokens at most) of "
        f"passages cut out of the held-out `{samples['split']}` documents, written by `climate-sft eval` "
        "(samples.json); `climate-sft generate RUN_DIR --prompt ...` asks your own.",
    ]
    for n, sample in enumerate(samples["samples"], 1):
        lines += [
            "",
            f"**{n}. {_cell(sample['title'] or sample['document'])}**",
            "",
            f"- prompt: {_one_line(sample['prompt'])} ...",
            f"- base: ... {_one_line(sample['base'])}",
            f"- fine-tuned: ... {_one_line(sample['fine_tuned'])}",
            f"- the document goes on: ... {_one_line(sample['reference'])}",
        ]
    return lines


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(nothing)"


def _cell(text: str) -> str:
    """Text from a document (a title, a passage) as one Markdown table cell or bold line: one line, no `|` or `*`
    that would end the cell or the emphasis early."""
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("`", "\\`")


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    stats, recipe = _load(run_dir, "training_stats.json"), _load(run_dir, "recipe.yaml")
    if not stats or not recipe:
        raise CorpusError(f"{run_dir}: no training_stats.json/recipe.yaml here; run `climate-sft train` first")
    evaluation = _load(run_dir, "eval_results.json")
    check_evaluation_is_current(run_dir, evaluation)
    plots = _plot(run_dir, stats, evaluation)
    memory = (
        f"{stats['peak_gpu_memory_allocated_gb']} GB allocated, {stats['peak_gpu_memory_reserved_gb']} GB reserved"
        if "peak_gpu_memory_allocated_gb" in stats
        else f"no GPU; peak process memory (RSS) {stats['peak_rss_gb']} GB"
    )
    search = stats.get("batch_size_search")
    searched = (
        f" (largest that fits, found by trial steps: tried {', '.join(search['tried'])}; "
        f"memory budget {search['memory_budget_gb']} GB)"
        if search
        else " (from the recipe)"
    )
    this = stats["this_segment"]
    resumed = (
        f"; resumed, in {stats['segments']} segments, the last {this['seconds']:.1f} s for {this['steps']} steps"
        if stats["segments"] > 1
        else ""
    )
    lines = [
        f"# Training report: {run_dir.name}",
        "",
        f"Written by `climate-sft report` on {datetime.date.today()} from this folder's recipe.yaml, "
        "training_stats.json and eval_results.json.",
        "",
        "## What it means",
        "",
        *[f"- {line}" for line in interpret(stats, evaluation)],
        "",
        *(
            ["## What the numbers can and cannot say", "", *[f"- {line}" for line in context(evaluation)], ""]
            if evaluation
            else []
        ),
        "## Run",
        "",
        f"- Model: `{stats['model']}`; recipe `{stats['recipe']}`; device: {stats['device']}",
        f"- Techniques: {'; '.join(techniques(recipe, stats))}",
        "",
        "| question | answer |",
        "| --- | --- |",
        f"| per-device batch size | {stats['per_device_train_batch_size']}{searched} |",
        f"| gradient accumulation | {stats['gradient_accumulation_steps']} |",
        f"| processes (GPUs) | {stats['world_size']} |",
        f"| effective batch size | {stats['effective_batch_size']} sequences of up to {stats['max_length']} tokens |",
        f"| peak memory | {memory} |",
        f"| training time | {stats['train_seconds']:.1f} s for {stats['steps']} steps "
        f"({stats['epochs']} epochs){resumed} |",
        f"| tokens trained on (no padding) | {stats['tokens_seen']:,} |",
        f"| throughput | {stats['tokens_per_second'] or 0:,.0f} tokens/s overall, "
        f"{stats['this_segment']['steady_tokens_per_second'] or 0:,.0f} tokens/s steady (this segment, after "
        f"{stats['this_segment']['warmup_steps_excluded']} warm-up steps) |",
        f"| final training loss | {stats['final_loss']:.4f} |" if stats.get("final_loss") is not None else "",
    ]
    if evaluation:
        lines += [
            f"| perplexity, base model (95 % interval) | "
            f"{with_interval(evaluation['base']['perplexity'], evaluation['base'].get('interval'))} |",
            f"| perplexity, fine-tuned (95 % interval) | "
            f"{with_interval(evaluation['fine_tuned']['perplexity'], evaluation['fine_tuned'].get('interval'))} |",
            f"| change (95 % interval, paired) | "
            f"{with_interval(evaluation['relative_change'], evaluation.get('relative_change_interval'), True)} |",
            *(
                [
                    f"| general text: base -> fine-tuned | {general['base']['perplexity']:.2f} -> "
                    f"{general['fine_tuned']['perplexity']:.2f} "
                    f"({with_interval(general['relative_change'], general.get('relative_change_interval'), True)}) |"
                ]
                if (general := evaluation.get("general_text"))
                else []
            ),
            "",
            f"Perplexity on the `{evaluation['split']}` split: {evaluation['documents']} document(s), "
            f"{evaluation['tokens']} tokens, windows of {evaluation['window']} tokens moving by "
            f"{evaluation['stride']}, {evaluation['precision']}. Per document:",
            "",
            "| document | tokens | base | fine-tuned |",
            "| --- | --- | --- | --- |",
            *[
                f"| {_cell(d['title'] or '(untitled)')} | {d['tokens']} | {d['base']:.3f} | {d['fine_tuned']:.3f} |"
                for d in evaluation["per_document"]
            ],
        ]
    else:
        lines += ["", "Perplexity: not measured yet; run `climate-sft eval` on this folder, then this report again."]
    lines += accuracy_table(evaluation.get("tasks")) if evaluation else []
    lines += answers(_load(run_dir, "samples.json"))
    lines += ["", "## Plots", ""] + [f"![{name[:-4]}]({name})" for name in plots]
    report = run_dir / "REPORT.md"
    write_atomic(report, "\n".join(line for line in lines if line is not None) + "\n")
    return report
