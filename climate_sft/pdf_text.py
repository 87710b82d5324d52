"""Stage 1: one PDF -> cleaned document text.

`read_pdf` pulls text blocks from each page with pymupdf (content-stream order, which is reading order for
the PDFs that typesetting tools write, two-column papers included). `clean_pages` then applies the
cleaning rules below, each a small function with its own test, in this order:

1. `normalize_unicode`         ligatures (U+FB01 -> "fi"), non-breaking spaces, soft hyphens
2. `drop_page_furniture`       running headers/footers that repeat across pages, bare page numbers
3. `split_heading`             a heading set on the first line of a paragraph's block becomes its own line
4. `join_hyphenated_words`     "tempera-\\nture" -> "temperature", "self-\\nsustaining" keeps its hyphen
5. `join_wrapped_lines`        lines of one paragraph -> one line; paragraph breaks stay
6. `join_split_paragraphs`     a paragraph cut by a column or page break is made whole again
7. `collapse_whitespace`       runs of spaces and tabs -> one space
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

# MuPDF prints repair messages to stderr; they are collected as document warnings instead.
pymupdf.TOOLS.mupdf_display_errors(False)

# A page with fewer characters than this after cleaning counts as empty (scans, figure-only pages).
EMPTY_PAGE_CHARS = 50
# Bump when a cleaning rule changes: extraction caches are keyed by it.
CLEANER_VERSION = 3

Page = list[list[str]]  # a page is a list of text blocks, a block a list of lines

_PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?$", re.IGNORECASE)
_LAST_WORD = re.compile(r"\w+$")
_FIRST_WORD = re.compile(r"\w+")
_BLANK_LINE = re.compile(r"\n\s*\n")
# First halves that make compounds rather than syllables ("self-sustaining", "well-known")
_COMPOUND_PREFIXES = {
    "self",
    "well",
    "non",
    "near",
    "cross",
    "half",
    "all",
    "low",
    "high",
    "long",
    "short",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
}
_SENTENCE_END = re.compile(r"[.!?:;)\]\"\u201d]$")


class PdfError(Exception):
    """A PDF that yields no usable text; the message is the one-line reason for the manifest."""


@dataclass
class Document:
    text: str
    title: str
    page_count: int
    page_chars: list[int]
    warnings: list[str] = field(default_factory=list)


def normalize_unicode(text: str) -> str:
    """NFKC folds ligatures and compatibility forms; soft hyphens are invisible in print and go."""
    return unicodedata.normalize("NFKC", text).replace("\u00ad", "")


_DIGITS_TO_HASH = str.maketrans("0123456789", "#" * 10)


def _furniture_key(line: str) -> str:
    # Running headers often carry the page number ("Climate report - 3"): compare them without digits.
    return line.strip().lower().translate(_DIGITS_TO_HASH)


def drop_page_furniture(pages: list[Page], edge_lines: int = 2) -> list[Page]:
    """Drop bare page numbers and lines that repeat near the top or bottom of at least half the pages.

    Only the first and last `edge_lines` lines of a page are candidates, so a sentence that happens to
    repeat in the body is kept.
    """

    def edges(page: Page) -> dict[tuple[int, int], str]:
        """The first and last `edge_lines` line positions (block, line) of a page, with their text."""
        positions = [(b, i) for b, block in enumerate(page[:edge_lines]) for i in range(len(block))][:edge_lines]
        tail = [(b, i) for b, block in enumerate(page) if b >= len(page) - edge_lines for i in range(len(block))]
        return {(b, i): page[b][i] for b, i in positions + tail[-edge_lines:]}

    candidates = [edges(page) for page in pages]
    seen = Counter(key for page in candidates for key in {_furniture_key(line) for line in page.values()})
    threshold = max(2, (len(pages) + 1) // 2)
    repeated = {key for key, n in seen.items() if n >= threshold and key}

    cleaned = []
    for page, lines in zip(pages, candidates):
        drop = {
            where
            for where, line in lines.items()
            if _PAGE_NUMBER.match(line.strip()) or _furniture_key(line) in repeated
        }
        touched = {b for b, _ in drop}
        blocks = [
            [line for i, line in enumerate(block) if (b, i) not in drop] if b in touched else block
            for b, block in enumerate(page)
        ]
        cleaned.append([block for block in blocks if any(line.strip() for line in block)])
    return cleaned


def split_heading(block: list[str]) -> list[list[str]]:
    """Typesetters often put a section heading in the same text block as its first paragraph. A first line
    much shorter than the block's longest that does not end in clause punctuation is taken as a heading
    (with the lines after it that look the same: headings wrap too)."""
    if len(block) < 3:
        return [block]
    full_line = max(len(line.strip()) for line in block)  # what a line of the column holds
    heading = 0  # a heading may wrap: take the leading run of such lines, leaving two for the paragraph
    while heading < len(block) - 2:
        line = block[heading].strip()
        if not line or len(line) >= 0.8 * full_line or re.search(r"[.,;:\-]$", line):
            break
        heading += 1
    return [block[:heading], block[heading:]] if heading else [block]


def join_hyphenated_words(text: str, document: str = "") -> str:
    """Join a word broken with a hyphen at a line end when the next line goes on in lower case.

    The hyphen stays (only the line break goes) before a capital or after a number ("sub-Arctic",
    "100-year"), when the first half is a compound-forming word ("self-", "well-"), and when `document`
    (the whole text, lower case) writes the same compound with a hyphen within a line. Without a dictionary
    the rest is a guess that favours joining.
    """
    if "-\n" not in text:  # most blocks: nothing to join
        return text
    parts = text.split("-\n")  # str.split, not a regex: this runs on every block of every page
    out = [parts[0]]
    for part in parts[1:]:
        head, tail = _LAST_WORD.search(out[-1][-40:]), _FIRST_WORD.match(part)
        if not head or not tail:
            out.append("-\n" + part)  # a dash at a line end, not a broken word
            continue
        head, tail = head.group(), tail.group()
        real_hyphen = (
            not tail[0].islower()
            or head.isdigit()
            or head.lower() in _COMPOUND_PREFIXES
            or f"{head}-{tail}".lower() in document
        )
        out.append(("-" if real_hyphen else "") + part)
    return "".join(out)


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace, line breaks included, becomes one space."""
    return " ".join(text.split())


def join_wrapped_lines(text: str) -> str:
    """Turn the line breaks inside a paragraph into spaces; blank lines (paragraph breaks) stay."""
    return "\n\n".join(filter(None, (collapse_whitespace(p) for p in _BLANK_LINE.split(text))))


def join_split_paragraphs(paragraphs: list[str]) -> list[str]:
    """Rejoin a paragraph that a column or page break cut in two.

    The first part ends without closing punctuation and the next starts in lower case or with a number:
    that is one sentence running on, not two paragraphs.
    """
    joined: list[str] = []
    for paragraph in paragraphs:
        if joined and (paragraph[:1].islower() or paragraph[:1].isdigit()) and not _SENTENCE_END.search(joined[-1]):
            previous = joined.pop()
            if previous.endswith("-") and previous[-2:-1].isalpha():
                joined.append(previous[:-1] + paragraph)
            else:
                joined.append(previous + " " + paragraph)
        else:
            joined.append(paragraph)
    return joined


def clean_pages(pages: list[Page]) -> tuple[list[str], list[int]]:
    """All rules in order. Returns the document's paragraphs and the characters kept per page.

    Cleaning must stay cheap next to pymupdf's own extraction (see benchmarks/extract.py): Unicode
    normalization runs once per document, and the per-block rules use str methods, not regex passes.
    """
    lines = "\n".join("\n".join("\n".join(block) for block in page) for page in pages)
    if not lines.isascii():  # NFKC once per document, then cut back into the same lines
        lines = normalize_unicode(lines)
        normalized = iter(lines.split("\n"))
        pages = [[[next(normalized) for _ in block] for block in page] for page in pages]
    pages = drop_page_furniture(pages)
    document = lines.lower()
    paragraphs, page_chars = [], []
    for page in pages:
        page_paragraphs = [
            paragraph
            for block in page
            for part in split_heading(block)
            for paragraph in join_wrapped_lines(join_hyphenated_words("\n".join(part), document)).split("\n\n")
            if paragraph
        ]
        page_chars.append(sum(map(len, page_paragraphs)))
        paragraphs += page_paragraphs
    return join_split_paragraphs(paragraphs), page_chars


# Clip to the page and nothing else: MuPDF then splits ligatures itself, and skipping image blocks and
# whitespace preservation makes extraction cheaper than a default `page.get_text()` (benchmarks/extract.py).
_TEXT_FLAGS = pymupdf.TEXT_MEDIABOX_CLIP


def _blocks(page: pymupdf.Page) -> Page:
    # Text blocks only (type 0); images carry no text layer.
    return [text.splitlines() for *_, text, _, kind in page.get_text("blocks", flags=_TEXT_FLAGS) if kind == 0]


def _title(metadata_title: str, paragraphs: list[str]) -> str:
    if metadata_title.strip():
        return collapse_whitespace(metadata_title)
    heading = paragraphs[0] if paragraphs else ""
    return heading if 0 < len(heading) <= 150 and not heading.endswith(".") else ""


def read_pdf(path: str | Path) -> Document:
    """Extract and clean one PDF. Raises `PdfError` with a one-line reason when nothing usable remains."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise PdfError("empty file (0 bytes)")
    pymupdf.TOOLS.mupdf_warnings()  # reset, so the warnings below belong to this file
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except (pymupdf.FileDataError, pymupdf.EmptyFileError, RuntimeError) as error:
        raise PdfError(f"not a readable PDF ({error})") from None
    with doc:
        if doc.needs_pass:
            raise PdfError("password-protected: decrypt it (e.g. `qpdf --decrypt`) or remove it")
        warnings = []
        if doc.is_repaired:
            warnings.append("damaged or truncated file, repaired on open: text may be incomplete")
        pages = [_blocks(page) for page in doc]
        metadata_title = (doc.metadata or {}).get("title") or ""
    if not pages:
        raise PdfError("no pages")
    paragraphs, page_chars = clean_pages(pages)
    if not paragraphs and warnings:
        raise PdfError("damaged or truncated file: no text could be recovered; get a complete copy")
    if not paragraphs:
        raise PdfError("no text layer (image-only or scanned PDF): run OCR first, e.g. `ocrmypdf`")
    empty = sum(chars < EMPTY_PAGE_CHARS for chars in page_chars)
    if empty * 2 > len(page_chars):
        warnings.append(f"{empty} of {len(page_chars)} pages are (almost) empty")
    return Document(
        text="\n\n".join(paragraphs),
        title=_title(metadata_title, paragraphs),
        page_count=len(page_chars),
        page_chars=page_chars,
        warnings=warnings,
    )
