"""The package's files, read whole or reported as damaged, and written whole or not at all.

Every command reads its inputs through one helper per kind of file (a run's JSON and YAML files, an adapter, a
model folder, a GGUF file), so a missing, empty, truncated or garbage file ends as one line naming it and what to
do, never as a library's traceback. Every file a command writes goes through `write_atomic` or
`atomic_folder`: it is written under a temporary name beside its target and renamed into place, so it appears
complete or not at all; temporaries that a killed process left are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import yaml

from climate_sft import UserError

_TEMPORARY = ".tmp-"  # `.NAME.tmp-PID`: a temporary of NAME written by process PID


class DamagedFile(UserError):
    """A file the command needs is missing, empty, cut off or not what its name says."""


def damaged(path: Path, reason: str, fix: str) -> DamagedFile:
    return DamagedFile(f"{path} is damaged ({reason}): {fix}")


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TEMPORARY}{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by processes that are gone (a kill -9 mid-write)."""
    for stale in path.parent.glob(f".{path.name}{_TEMPORARY}*"):
        pid = stale.name.rsplit(_TEMPORARY, 1)[-1].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """`text` into `path` whole: a reader sees the old file or the new one."""
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yields a temporary path beside `path` for a writer that needs a file name (a plot, a GGUF converter);
    renamed into place when the block ends without error, removed otherwise."""
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = temporary_name(path).with_suffix(path.suffix)  # some writers choose the format by the suffix
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: Path):
    """Yields a temporary folder beside `path`; it becomes `path` when the block ends without error. `path` must
    be absent or an empty folder (checked before any work, so nothing is overwritten)."""
    path = Path(path)
    if str(path) in ("", "."):
        raise UserError("the output folder is empty or '.': name a new folder")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file; give a new folder (nothing was overwritten)")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{path}: exists and is not empty; give a new folder (nothing was overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _text(path: Path, fix: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise damaged(path, "not UTF-8 text", fix) from None
    except IsADirectoryError:
        raise damaged(path, "a folder where a file belongs", fix) from None
    if not text.strip():
        raise damaged(path, "empty", fix)
    return text


def read_json(path: Path, fix: str, required: bool = True) -> Any:
    """The JSON value in `path`; None when it is absent and not `required`; DamagedFile otherwise."""
    path = Path(path)
    if not path.exists():
        if required:
            raise DamagedFile(f"{path} is missing: {fix}")
        return None
    try:
        return json.loads(_text(path, fix))
    except ValueError as error:
        raise damaged(path, f"not valid JSON: {str(error).split(':')[0]}", fix) from None


def read_mapping(path: Path, fix: str, keys: tuple[str, ...] = (), required: bool = True) -> dict | None:
    """A JSON or YAML file holding a mapping with at least `keys`."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            if required:
                raise DamagedFile(f"{path} is missing: {fix}")
            return None
        try:
            value = yaml.safe_load(_text(path, fix))
        except yaml.YAMLError:
            raise damaged(path, "not valid YAML", fix) from None
    else:
        value = read_json(path, fix, required)
        if value is None:
            return None
    if not isinstance(value, dict):
        raise damaged(path, f"holds a {type(value).__name__}, not a mapping", fix)
    missing = [key for key in keys if key not in value]
    if missing:
        raise damaged(path, f"no '{missing[0]}'", fix)
    return value


def check_safetensors(path: Path, fix: str) -> None:
    """A safetensors file that the safetensors library opens: header, dtypes, shapes and length agree."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise DamagedFile(f"{path} is missing: {fix}")
    try:
        with safe_open(str(path), "pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as error:
        raise damaged(path, f"not a whole safetensors file: {str(error).splitlines()[0]}", fix) from None


def check_adapter(run_dir: Path) -> None:
    """A run folder's LoRA adapter: its config and weights, whole."""
    fix = f"retrain with `climate-sft train` into {run_dir} (it resumes from its newest checkpoint)"
    read_mapping(run_dir / "adapter_config.json", fix, keys=("peft_type",))
    check_safetensors(run_dir / "adapter_model.safetensors", fix)


def check_model_folder(folder: Path) -> None:
    """A local model folder: a config.json that names the architecture, every JSON file a whole mapping (the
    tokenizer's and the generation config too), and weights in it."""
    fix = "copy the model folder again (save_pretrained), or name a hub id"
    read_mapping(folder / "config.json", fix, keys=("model_type",))
    for path in folder.glob("*.json"):  # config, generation and tokenizer files: each a JSON mapping
        read_mapping(path, fix)
    weights = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    if not weights:
        raise DamagedFile(f"{folder} holds no weights (*.safetensors or *.bin): {fix}")
    for path in folder.glob("*.safetensors"):
        check_safetensors(path, fix)


def check_gguf(path: Path) -> None:
    """A GGUF file that the gguf library can read."""
    fix = "download or copy the GGUF file again"
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise damaged(path, "no GGUF header", fix)
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError, struct.error) as error:
        raise damaged(path, f"unreadable GGUF: {error}", fix) from None
    if not reader.tensors or "general.architecture" not in reader.fields:
        raise damaged(path, "no tensors or no general.architecture", fix)
