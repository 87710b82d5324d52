"""Stage 1, for inputs other than PDFs: text files, JSON-lines records and `datasets` datasets -> document texts.

`climate-sft extract SOURCE` takes a folder (PDFs, `.txt` and `.md` files, recursively), a `.jsonl` file (one
document per line, its text in `--text-field`), or `--dataset_name NAME` (TRL's names: `--dataset_config`,
`--dataset_train_split`, `--dataset_text_field`) read by `datasets.load_dataset`: a hub id, or a local folder
(data files, or one written by `save_to_disk`). Each input here becomes a `Text`; the corpus builder
(`corpus.py`) gives it an id and content hash, drops duplicates and splits by document, as it does for PDFs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from climate_sft import UserError

TEXT_SUFFIXES = (".txt", ".md")
TITLE_CHARS = 200
# Prose holds no control characters but line breaks and tabs; a text with more than this share of others (NUL
# bytes, a binary file renamed .txt) is not a document.
MAX_CONTROL_CHARACTERS = 0.001
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # Unicode's Cc less \t \n \f \r


class SourceError(UserError):
    """The source as a whole cannot be read (not one bad record); the message names it and what to do."""


@dataclass(frozen=True)
class HubDataset:
    """A dataset for `datasets.load_dataset`, in TRL's terms: a hub id or a local folder, config and split."""

    name: str
    config: str | None = None
    split: str = "train"

    def __str__(self) -> str:
        return f"{self.name}[{self.split}]"


@dataclass
class Text:
    """One input's text, or the reason it has none. `sha256` hashes a file's bytes, or a record's text."""

    source: str
    kind: str  # "text" (a .txt / .md file) | "jsonl" | "dataset"
    sha256: str
    text: str = ""
    title: str = ""
    reason: str = ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def title_of(text: str, fallback: str) -> str:
    """The first non-empty line, Markdown heading marks removed; `fallback` when there is none."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:TITLE_CHARS]
    return fallback


def not_prose(text: str) -> str:
    """Why `text` is not a document (too many control characters), or "" when it reads as text."""
    controls = len(CONTROL_CHARACTER.findall(text))
    if controls > MAX_CONTROL_CHARACTERS * len(text):
        return f"not prose: {controls} of {len(text)} characters are control characters (e.g. NUL bytes)"
    return ""


def _record(source: str, kind: str, value, title=None) -> Text:
    """A record's text field as a Text: taken as written, surrounding whitespace removed."""
    if not isinstance(value, str):
        return Text(source, kind, _sha256(source.encode()), reason=f"the text field holds {type(value).__name__}")
    text = value.strip()
    if not text:
        return Text(source, kind, _sha256(source.encode()), reason="the text field is empty")
    if reason := not_prose(text):
        return Text(source, kind, _sha256(text.encode()), reason=reason)
    fallback = title if isinstance(title, str) and title.strip() else None
    return Text(source, kind, _sha256(text.encode()), text, fallback or title_of(text, source))


def text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def read_text_file(path: Path) -> Text:
    """A UTF-8 `.txt` or `.md` file as one document, line endings made `\\n`."""
    data = path.read_bytes()
    sha = _sha256(data)
    try:
        text = data.decode("utf-8-sig").replace("\r\n", "\n").strip()
    except UnicodeDecodeError as error:
        return Text(str(path), "text", sha, reason=f"not UTF-8 text (byte {error.start}): convert it to UTF-8")
    if not text:
        return Text(str(path), "text", sha, reason="the file holds no text")
    if reason := not_prose(text):
        return Text(str(path), "text", sha, reason=reason)
    return Text(str(path), "text", sha, text, title_of(text, path.stem))


def read_jsonl(path: Path, text_field: str) -> Iterator[Text]:
    """One document per line, its text in `text_field` (a `title` field is used where there is one). A byte-order
    mark is not part of the first record; a line that is not UTF-8 is skipped with that reason."""
    found = False
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            source = f"{path}:{number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                reason = f"not UTF-8 (byte {error.start}): convert the file to UTF-8"
                yield Text(source, "jsonl", _sha256(source.encode()), reason=reason)
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield Text(source, "jsonl", _sha256(source.encode()), reason="not valid JSON")
                continue
            if not isinstance(record, dict) or text_field not in record:
                if number == 1 and isinstance(record, dict):
                    fields = ", ".join(record) or "none"
                    raise SourceError(
                        f"{path}: line 1 has no field '{text_field}' (it has {fields}); pass --text-field NAME"
                    )
                yield Text(source, "jsonl", _sha256(source.encode()), reason=f"no field '{text_field}'")
                continue
            found = True
            yield _record(source, "jsonl", record[text_field], record.get("title"))
    if not found:
        raise SourceError(f"{path}: no line holds a JSON object with the field '{text_field}'")


def load_hub_dataset(source: HubDataset):
    """The dataset's split: `load_from_disk` for a folder `save_to_disk` wrote, `load_dataset` for the rest."""
    from datasets import load_dataset, load_from_disk

    folder = Path(source.name).expanduser()
    try:
        if (folder / "state.json").is_file():  # one Dataset saved whole: it has no splits
            return load_from_disk(str(folder))
        if (folder / "dataset_dict.json").is_file():
            saved = load_from_disk(str(folder))
            if source.split not in saved:
                raise SourceError(
                    f"{source.name} has no split '{source.split}' (it has {', '.join(saved)}); "
                    "pass --dataset_train_split NAME"
                )
            return saved[source.split]
        return load_dataset(source.name, source.config, split=source.split)
    except (OSError, ValueError) as error:  # datasets' own: unknown id or split, offline, no data files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceError(f"--dataset_name {source.name}: {first}") from None


def read_dataset(source: HubDataset, text_field: str) -> Iterator[Text]:
    """One document per row, its text in the column `text_field`."""
    dataset = load_hub_dataset(source)
    if text_field not in dataset.column_names:
        raise SourceError(
            f"--dataset_name {source.name}: no column '{text_field}' (it has {', '.join(dataset.column_names)}); "
            "pass --dataset_text_field NAME"
        )
    titles = "title" in dataset.column_names
    columns = [text_field, "title"] if titles and text_field != "title" else [text_field]
    for number, row in enumerate(dataset.select_columns(columns)):
        yield _record(f"{source}:{number}", "dataset", row[text_field], row.get("title") if titles else None)
