"""Stage 9: the base and the fine-tuned model answer the same prompt, side by side.

    climate-sft generate RUN_DIR --prompt "Sea level rise is" [--prompt ...] [--sample] [--chat] [--base FOLDER]
    climate-sft generate RUN_DIR --interactive          (one prompt per line; an empty line or Ctrl-D ends)
    climate-sft generate RUN_DIR --samples 3            (RUN_DIR/samples.json, for the report)

One model in memory: the base loaded as in training with the adapter on top; the base answers with the adapter
switched off (`disable_adapter`). Greedy decoding by default; `--sample` adds a sampled answer from each, with
the same seed for both. The corpus is plain text, so a prompt is continued as text; `--chat` wraps it in the
tokenizer's chat template instead. `samples.json` holds greedy continuations of passages cut out of the run's
held-out test documents, with the text that really follows.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from climate_sft import UserError
from climate_sft.corpus import held_out_documents, read_run_record
from climate_sft.files import write_atomic


@dataclass
class Decoding:
    max_new_tokens: int = 64
    sample: bool = False  # greedy only, or greedy and sampled
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    chat: bool = False


class SideBySide:
    """The run's model, answering as base and as fine-tuned."""

    def __init__(self, run_dir: str | Path, base: str | None = None):
        from peft import PeftModel

        from climate_sft.merge import load_run

        self.run_dir = Path(run_dir)
        self.recipe, model, self.tokenizer = load_run(run_dir, base)
        if model.device.type == "cpu" and torch.cuda.is_available():
            model.to("cuda")  # unquantized models load on the CPU; quantized ones are placed at load time
        self.model = PeftModel.from_pretrained(model, str(run_dir)).eval()

    def answer(self, prompt: str, fine_tuned: bool, sampled: bool, decoding: Decoding, stream: bool = False) -> str:
        from transformers import TextStreamer

        text = prompt
        if decoding.chat:
            if not self.tokenizer.chat_template:
                raise UserError("--chat: this model's tokenizer has no chat template; leave out --chat")
            messages = [{"role": "user", "content": prompt}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not decoding.chat).to(self.model.device)
        options = dict(
            max_new_tokens=decoding.max_new_tokens,
            do_sample=sampled,
            temperature=decoding.temperature if sampled else None,
            top_p=decoding.top_p if sampled else None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            streamer=TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None,
        )
        torch.manual_seed(decoding.seed)  # the same draws for base and fine-tuned
        with torch.inference_mode():
            if fine_tuned:
                ids = self.model.generate(**inputs, **options)
            else:
                with self.model.disable_adapter():
                    ids = self.model.generate(**inputs, **options)
        return self.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def show(self, prompt: str, decoding: Decoding) -> dict[str, str]:
        """Print (streaming) and return every answer to one prompt."""
        answers = {}
        for sampled in (False, True) if decoding.sample else (False,):
            for fine_tuned in (False, True):
                label = f"{'fine-tuned' if fine_tuned else 'base'} ({'sampled' if sampled else 'greedy'})"
                print(f"--- {label}: {prompt}", flush=True)
                answers[label] = self.answer(prompt, fine_tuned, sampled, decoding, stream=True)
        return answers


def held_out_prompts(run_dir: str | Path, count: int, prompt_words: int = 40, reference_words: int = 40):
    """`count` passages cut out of the run's held-out test documents, spread over them and along each: (document,
    prompt, the text that follows)."""
    from climate_sft.config import load_recipe

    run_dir = Path(run_dir)
    split = load_recipe(run_dir / "recipe.yaml").data.test_split
    documents, _ = held_out_documents(read_run_record(run_dir), split)
    passages = []
    span = prompt_words + reference_words
    for i in range(count):
        if not documents:
            break
        document = documents[i % len(documents)]
        words = document["text"].split()
        cuts = max(1, (count + len(documents) - 1) // len(documents))  # passages this document gives
        start = (i // len(documents)) * max(0, len(words) - span) // cuts
        prompt, follows = words[start : start + prompt_words], words[start + prompt_words : start + span]
        if prompt:
            passages.append((document, " ".join(prompt), " ".join(follows)))
    return passages


def write_samples(run_dir: str | Path, count: int = 3, base: str | None = None, decoding: Decoding | None = None):
    """RUN_DIR/samples.json: greedy answers of base and fine-tuned model to passages of held-out documents."""
    decoding = decoding or Decoding(max_new_tokens=48)
    pair = SideBySide(run_dir, base)
    samples = [
        {
            "document": document["id"],
            "title": document.get("title"),
            "prompt": prompt,
            "base": pair.answer(prompt, fine_tuned=False, sampled=False, decoding=decoding),
            "fine_tuned": pair.answer(prompt, fine_tuned=True, sampled=False, decoding=decoding),
            "reference": follows,
        }
        for document, prompt, follows in held_out_prompts(run_dir, count)
    ]
    path = Path(run_dir) / "samples.json"
    record = {"split": pair.recipe.data.test_split, "decoding": "greedy", "max_new_tokens": decoding.max_new_tokens}
    write_atomic(path, json.dumps({**record, "samples": samples}, indent=2) + "\n")
    return path


def interactive(pair: SideBySide, decoding: Decoding, lines=None) -> None:
    """One prompt per line until an empty line or end of input."""
    lines = lines or sys.stdin
    while True:
        print("prompt> ", end="", flush=True)
        line = lines.readline()
        if not line.strip():
            print()
            return
        pair.show(line.strip(), decoding)
        print()
