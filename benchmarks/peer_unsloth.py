"""The peer, measured in our harness: Unsloth trains the same model on the same corpus, timed by our clock.

Unsloth wants TRL <= 1.15 and datasets < 5, so it runs in a process of its own whose PYTHONPATH holds only its
site (benchmarks/build_peer_site.sh), never .devsite (TRL 1.16). On the GPU machine, in the same command as the
train_speed.py sweeps (carry .devsite, .peer-site.tar.xz and the tokenizer):

    mkdir -p /tmp/peer-site && tar -xJf .peer-site.tar.xz -C /tmp/peer-site
    PYTHONPATH=/tmp/peer-site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 timeout 540 python3 benchmarks/peer_unsloth.py \\
        --model /tmp/llama-3.2-3b-random --corpus /tmp/bench_corpus --batches 16,32,64 --max-length 2048 \\
        --warmup 2 --steps 3 --memory-cap-gb 79.2 --out $OUT/peer_unsloth.json > $OUT/peer_unsloth.log 2>&1

What runs is Unsloth's own recipe: FastLanguageModel.from_pretrained(load_in_4bit, bf16, max_seq_length), then
get_peft_model(r=8, alpha=32, dropout 0, q/k/v/o, use_gradient_checkpointing="unsloth"), then the SFTTrainer
that `import unsloth` puts in TRL, with packing and padding-free batches (its collator adds
`packed_seq_lengths`), paged AdamW 8-bit, bf16, on the text of the corpus' train split. For each batch size,
with the warm-up steps left out: real tokens/s from climate_sft.run_stats.StepClock (the clock and token count
of our trainer and of train_speed.py), median step time, peak memory. The memory cap
(torch.cuda.set_per_process_memory_fraction, GiB) is set right after `import unsloth`, which must come first and
sets its allocator options, and before the model loads. Also recorded: versions, the attention path Unsloth
took, the packing strategy and the tokens it dropped, and whether packed documents attend to each other.

Without Unsloth or a CUDA GPU the result file says "skipped" and why. If Unsloth cannot run, its error is
there; the next best peer is plain TRL with Liger and padding-free packing:
train_speed.py --variant naive:16,32,64 --override "--use_liger_kernel true".
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # climate_sft, when run as a file

VARIANT = "unsloth"
LORA = dict(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
CHECK_TOKENS = 400  # of each of the two documents in the attention check
# unsloth.utils.attention_dispatch functions -> the attention they run, for a packed (padding-free) batch
ATTENTION_PATHS = {
    "flash_attn_varlen_func": "flash-attn varlen kernel",
    "xformers_attention": "xformers with a block-diagonal mask",
    "_torch_varlen_packed": "torch varlen_attn (FlashAttention over cumulative lengths)",
    "_sdpa_packed_segments": "SDPA per packed segment (one call per run of equal lengths)",
    "build_sdpa_packed_attention_mask": "SDPA with a dense block-diagonal mask",
}
VERSIONS = (
    "unsloth",
    "unsloth_zoo",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "triton",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (a random-init Llama-3.2-3B)")
    parser.add_argument("--corpus", required=True, help="corpus folder (its dataset/ is read, train split)")
    parser.add_argument("--batches", type=batch_list, default=[16, 32, 64], help="micro-batch sizes, e.g. 16,32,64")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps left out of the timing")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps")
    parser.add_argument(
        "--memory-cap-gb", type=float, default=79.2, help="GiB PyTorch may use; 79.2 is what an H100 80GB gives it"
    )
    parser.add_argument(
        "--packing-strategy",
        choices=["bfd_split", "bfd"],
        default="bfd_split",
        help="bfd_split keeps every token; TRL's default bfd drops each document's tail",
    )
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/unsloth"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def batch_list(text: str) -> list[int]:
    batches = [int(b) for b in text.split(",")]
    if min(batches) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive: {text}")
    return batches


def unavailable() -> str | None:
    """Why the peer cannot run here, if it cannot."""
    if importlib.util.find_spec("unsloth") is None:
        return "unsloth is not installed (build its site with benchmarks/build_peer_site.sh)"
    if not torch.cuda.is_available():
        return "Unsloth needs a CUDA GPU"
    return None


def failure(error: BaseException) -> str:
    """One line for the result file."""
    message = str(error).strip()
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in message.lower():
        return "out of memory"
    return f"error: {type(error).__name__}: {message.splitlines()[0][:300] if message else ''}"


def cap_memory(gib: float) -> dict:
    """Emulate a smaller card: PyTorch's allocator may take at most `gib` of this one."""
    total = torch.cuda.get_device_properties(0).total_memory
    reserved = torch.cuda.memory_reserved()
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    return {
        "gib": gib,
        "card_gib": round(total / 2**30, 1),
        "reserved_before_cap_gib": round(reserved / 2**30, 3),
        "how": "torch.cuda.set_per_process_memory_fraction right after `import unsloth`, before the model loads",
        "allocator": os.environ.get("PYTORCH_ALLOC_CONF"),
    }


def train_texts(train, tokens_needed: float, kept_per_document: int | None = None):
    """The first documents of the train split that hold about `tokens_needed` tokens (4 characters a token; at
    most `kept_per_document` of each where packing truncates), text only: tokenizing and packing the rest would
    be timed by nobody."""
    chars, count = 0, len(train)
    for i, n in enumerate(train["characters"]):
        chars += min(n, 4 * kept_per_document) if kept_per_document else n
        if chars >= 4 * tokens_needed:
            count = i + 1
            break
    return train.select(range(count)).select_columns(["text"])


def tokenized(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids as Unsloth's SFTTrainer makes them from plain text: no EOS appended (TRL appends one), and no
    BOS where the tokenizer's BOS already appears in its chat template (its double-BOS guard)."""
    bos = tokenizer.bos_token
    add_special_tokens = not (bos and bos in (tokenizer.chat_template or ""))
    return tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]


def packing_record(trainer, tokenizer, texts: list[str], max_length: int) -> dict:
    """What packing kept of the documents the trainer was given."""
    lengths = [len(ids) for ids in tokenized(tokenizer, texts)]
    kept = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return {
        "packing_strategy": trainer.args.packing_strategy,
        "padding_free": bool(trainer.padding_free),
        "documents": len(lengths),
        "documents_longer_than_max_length": sum(n > max_length for n in lengths),
        "tokens_in_documents": sum(lengths),
        "tokens_after_packing": kept,
        "tokens_dropped": sum(lengths) - kept,
        "packed_rows": len(trainer.train_dataset),
    }


def sft_config(args: argparse.Namespace, batch: int) -> dict:
    """SFTConfig arguments: the package's QLoRA recipes' schedule and optimizer, Unsloth's packing."""
    return dict(
        output_dir=str(args.workdir / f"batch{batch}"),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_length=args.max_length,
        packing=True,
        packing_strategy=args.packing_strategy,
        dataset_text_field="text",
        optim="paged_adamw_8bit",
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        bf16=True,
        fp16=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        dataloader_num_workers=2,
        seed=42,
        disable_tqdm=True,
    )


def build_trainer(model, tokenizer, texts, config: dict):
    from trl import SFTConfig, SFTTrainer  # Unsloth's, once unsloth is imported

    return SFTTrainer(model=model, processing_class=tokenizer, train_dataset=texts, args=SFTConfig(**config))


class CallCounter:
    """Counts calls of module-level functions while active (the module's own code looks them up at call time)."""

    def __init__(self, module, names):
        self.module, self.counts = module, dict.fromkeys(names, 0)
        self.saved = {n: getattr(module, n) for n in names if callable(getattr(module, n, None))}

    def __enter__(self):
        for name, function in self.saved.items():
            setattr(self.module, name, self._counted(name, function))
        return self.counts

    def _counted(self, name, function):
        def counted(*args, **kwargs):
            self.counts[name] += 1
            return function(*args, **kwargs)

        return counted

    def __exit__(self, *exc):
        for name, function in self.saved.items():
            setattr(self.module, name, function)


def verdict(separated: float, leaked: float) -> str:
    if leaked == 0:
        return "inconclusive: the control that lets the documents mix changed nothing either"
    if separated * 5 < leaked:
        return "apart: packed documents do not attend to each other"
    return "mixed: packed documents attend to each other (the packed document differs like the control)"


def attention_check(trainer, tokenizer, texts: list[str], dispatch) -> dict:
    """Do packed documents attend to each other? Log-probs of the second of two documents packed in one row by the
    trainer's own collator (one flattened row, positions restarting, `packed_seq_lengths`), against the same
    document alone; the control packs both as one sequence, which lets the second attend to the first. The model
    is in training mode (the attention path training takes), without gradients. Calls of `dispatch`'s attention
    functions (ATTENTION_PATHS) during the packed forward say which attention ran."""
    first, second = (ids[:CHECK_TOKENS] for ids in tokenized(tokenizer, texts[:2]))

    def log_probs(rows, start):
        batch = trainer._prepare_inputs(trainer.data_collator(rows))
        keys = sorted(batch)
        batch.pop("labels", None)
        trainer.model.train()
        with torch.no_grad():
            logits = trainer.model(**batch, use_cache=False).logits[0, start:-1].float()
        targets = batch["input_ids"][0, start + 1 :]
        return logits.log_softmax(-1).gather(-1, targets[:, None])[:, 0], keys

    alone, _ = log_probs([{"input_ids": second, "seq_lengths": [len(second)]}], 0)
    packed_row = [{"input_ids": first + second, "seq_lengths": [len(first), len(second)]}]
    with CallCounter(dispatch, ATTENTION_PATHS) as calls:
        packed, keys = log_probs(packed_row, len(first))
    mixed, _ = log_probs([{"input_ids": first + second, "seq_lengths": [len(first) + len(second)]}], len(first))
    separated = (torch.linalg.norm(packed - alone) / torch.linalg.norm(alone)).item()
    leaked = (torch.linalg.norm(mixed - alone) / torch.linalg.norm(alone)).item()
    return {
        "documents_tokens": [len(first), len(second)],
        "batch_keys": keys,
        "relative_difference": separated,
        "max_abs_difference": (packed - alone).abs().max().item(),
        "mixing_control_relative_difference": leaked,
        "verdict": verdict(separated, leaked),
        "attention_calls": {name: n for name, n in calls.items() if n},
        "attention_path": [ATTENTION_PATHS[name] for name, n in calls.items() if n],
    }


def run_batch(model, tokenizer, train, batch: int, args: argparse.Namespace) -> dict:
    """One batch size: warm-up and timed steps through Unsloth's trainer. Any failure becomes the row's status."""
    from climate_sft.run_stats import StepClock, track_real_tokens  # imports transformers: after unsloth

    result, trainer = {"variant": VARIANT, "batch": batch}, None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        truncates = args.max_length if args.packing_strategy == "bfd" else None
        texts = train_texts(train, 1.5 * (args.warmup + args.steps) * batch * args.max_length, truncates)
        trainer = build_trainer(model, tokenizer, texts, sft_config(args, batch))
        result.update(packing_record(trainer, tokenizer, list(texts["text"]), args.max_length))
        track_real_tokens(trainer)
        clock = StepClock()
        trainer.add_callback(clock)
        trainer.train()
        seconds, tokens = clock.step_seconds()[args.warmup :], clock.step_tokens()[args.warmup :]
        allocated, reserved = torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30
        result.update(
            status="ok",
            tokens_per_step=round(statistics.mean(tokens)),
            median_step_s=round(statistics.median(seconds), 4),
            tokens_per_s=round(clock.tokens_per_second(skip=args.warmup), 1),
            token_count=f"state.num_input_tokens_seen ({trainer.args.include_num_input_tokens_seen})",
            step_seconds=[round(s, 4) for s in clock.step_seconds()],
            step_tokens=clock.step_tokens(),
            peak_allocated_gb=round(allocated, 2),
            peak_reserved_gb=round(reserved, 2),
            within_memory_cap=reserved <= args.memory_cap_gb,
            losses=[e["loss"] for e in trainer.state.log_history if "loss" in e],
            trainer=type(trainer).__name__,
        )
    except Exception as error:  # one failing batch size must not cost the others
        traceback.print_exc()
        result["status"] = failure(error)
    finally:
        del trainer
        gc.collect()
        torch.cuda.empty_cache()
    return result


def load_peer(args: argparse.Namespace):
    """The 4-bit model with Unsloth's LoRA and offloaded gradient checkpointing, and its tokenizer."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=args.model, max_seq_length=args.max_length, dtype=torch.bfloat16, load_in_4bit=True
    )
    model = FastLanguageModel.get_peft_model(
        model, **LORA, bias="none", use_gradient_checkpointing="unsloth", random_state=42
    )
    return model, tokenizer


def setup_record(model) -> dict:
    """How the model was set up, read off the loaded model."""
    quantization = getattr(model.config, "quantization_config", None)
    quantization = quantization.to_dict() if hasattr(quantization, "to_dict") else quantization or {}
    return {
        "lora": LORA,
        "quantization": {k: str(v) for k, v in quantization.items() if k.startswith(("load_in_4bit", "bnb_4bit"))},
        "gradient_checkpointing": torch.utils.checkpoint.CheckpointFunction.__name__,
        "input_embeddings_on": model.get_input_embeddings().weight.device.type,
    }


def versions() -> dict:
    found = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def table(results: list[dict]) -> str:
    lines = [
        f"{'variant':10s} {'batch':>5s} {'tokens/s':>9s} {'step s':>7s} {'alloc GB':>8s} {'resv GB':>8s} "
        f"{'dropped':>8s}"
    ]
    for r in results:
        if r["status"] == "ok":
            lines.append(
                f"{r['variant']:10s} {r['batch']:5d} {r['tokens_per_s']:9.0f} {r['median_step_s']:7.3f} "
                f"{r['peak_allocated_gb']:8.1f} {r['peak_reserved_gb']:8.1f} {r['tokens_dropped']:8d}"
            )
        else:
            lines.append(f"{r['variant']:10s} {r['batch']:5d} {r['status']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from climate_sft.corpus import load_corpus
    from climate_sft.files import write_atomic

    record = {
        "command": " ".join(["python benchmarks/peer_unsloth.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d"),
        "model": "random-init weights, architecture of " + Path(args.model).name,
        "max_length": args.max_length,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
    }
    reason, status = unavailable(), 0
    if reason:
        record["status"] = f"skipped: {reason}"
        record["results"] = [{"variant": VARIANT, "batch": b, "status": record["status"]} for b in args.batches]
    else:
        # Unsloth patches transformers, TRL and PEFT as it is imported, so it comes before them
        os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(args.workdir / "unsloth_compiled_cache"))
        os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")  # its usage ping downloads from the hub
        try:
            import unsloth
            import unsloth.utils.attention_dispatch as dispatch

            record["memory_cap"] = cap_memory(args.memory_cap_gb)
            site = Path(unsloth.__file__).resolve().parents[1] / "peer_site.json"
            record.update(
                device=torch.cuda.get_device_name(),
                versions=versions(),
                peer_site=json.loads(site.read_text()) if site.exists() else None,
            )
            model, tokenizer = load_peer(args)
            record["setup"] = setup_record(model)
            train = load_corpus(args.corpus)["train"]
            record["attention"] = {
                "flash_attn": getattr(dispatch, "HAS_FLASH_ATTENTION", None),
                "xformers": getattr(dispatch, "HAS_XFORMERS", None),
                "torch_varlen_attn": getattr(dispatch, "_TORCH_VARLEN_ATTN", None) is not None,
                "packed_backend": dispatch.select_attention_backend(True),
            }
            try:
                texts = train.select(range(2)).select_columns(["text"])
                check_trainer = build_trainer(model, tokenizer, texts, sft_config(args, 1))
                record["attention"]["check"] = attention_check(check_trainer, tokenizer, list(texts["text"]), dispatch)
                del check_trainer
            except Exception as error:
                traceback.print_exc()
                record["attention"]["check"] = {"error": failure(error)}
            record["results"] = []
            for batch in args.batches:
                record["results"].append(run_batch(model, tokenizer, train, batch, args))
                print(json.dumps(record["results"][-1]), flush=True)
            record["status"] = "ran"
        except Exception as error:
            traceback.print_exc()
            record["status"] = failure(error)
            done = {r["batch"] for r in record.get("results", [])}
            record.setdefault("results", []).extend(
                {"variant": VARIANT, "batch": b, "status": record["status"]} for b in args.batches if b not in done
            )
            status = 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(record, indent=2) + "\n")
    print(table(record["results"]))
    if "attention" in record:
        print("packed documents:", record["attention"].get("check", {}).get("verdict"))
    return status


if __name__ == "__main__":
    sys.exit(main())
