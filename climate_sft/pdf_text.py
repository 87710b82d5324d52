"""Stage 1: one PDF -> cleaned document text, its title, language and quality.

`read_pdf` pulls text blocks from each page with pymupdf (content-stream order, which is reading order for
the PDFs that typesetting tools write, two-column papers included), OCRs pages without a text layer through
Tesseract when asked (`ocr=True`), and hands the blocks to the cleaning rules in `climate_sft.text_rules`
(`clean_pages`; the numbered list of rules is there). Then it picks a title (`choose_title`), detects the
language and measures quality, and explains in one line why a file gave no text.
"""

from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

from climate_sft.text_rules import (
    Page,
    clean_pages,
    collapse_whitespace,
    detect_language,
    is_title_like,
    text_quality,
)

# MuPDF prints repair messages to stderr; they are collected as document warnings instead.
pymupdf.TOOLS.mupdf_display_errors(False)

# A page with fewer characters than this after cleaning counts as empty (scans, figure-only pages).
EMPTY_PAGE_CHARS = 50
# Below these a document is named in a warning: mostly numbers and symbols, or mostly not sentences.
MIN_ALPHABETIC_WORDS = 0.6
MAX_NON_PROSE_LINES = 0.7
# Bump when a cleaning rule changes: extraction caches are keyed by it.
CLEANER_VERSION = 4
# Tesseract's language and the resolution pages are rendered at for it (300 dpi reads 9 pt text reliably).
OCR_LANGUAGE, OCR_DPI = "eng", 300
INSTALL_TESSERACT = "install Tesseract: `apt-get install tesseract-ocr` (Debian/Ubuntu) or `brew install tesseract`"
# Blocks whose box lies in the top or bottom tenth of a page are running-header and footer candidates.
MARGIN_BAND = 0.1


class PdfError(Exception):
    """A PDF that yields no usable text; the message is the one-line reason for the manifest."""


@dataclass
class Document:
    text: str
    title: str
    page_count: int
    page_chars: list[int]
    warnings: list[str] = field(default_factory=list)
    language: str = ""  # ISO 639-1, "" when it could not be told
    alphabetic_words: float = 0.0  # share of words made of letters
    non_prose_lines: float = 0.0  # share of lines (paragraphs) that are not sentences
    rules: list[str] = field(default_factory=list)  # cleaning rules that changed something
    ocr_pages: list[int] = field(default_factory=list)  # 1-based
    back_matter_chars: int = 0  # characters of reference lists and boilerplate dropped


def ocr_available() -> bool:
    return shutil.which("tesseract") is not None


# Clip to the page and nothing else: MuPDF then splits ligatures itself, and skipping image blocks and
# whitespace preservation makes extraction cheaper than a default `page.get_text()` (benchmarks/extract.py).
_TEXT_FLAGS = pymupdf.TEXT_MEDIABOX_CLIP

Box = tuple[float, float, float, float]


def _blocks(page: pymupdf.Page, textpage: pymupdf.TextPage | None = None) -> tuple[Page, list[Box]]:
    """The page's text blocks (type 0; images carry no text layer) as lines, and their boxes."""
    blocks, boxes = [], []
    for x0, y0, x1, y1, text, _, kind in page.get_text("blocks", flags=_TEXT_FLAGS, textpage=textpage):
        if kind == 0:
            blocks.append(text.splitlines())
            boxes.append((x0, y0, x1, y1))
    return blocks, boxes


def _margin_blocks(boxes: list[Box], height: float) -> set[int]:
    top, bottom = height * MARGIN_BAND, height * (1 - MARGIN_BAND)
    return {b for b, (_, y0, _, y1) in enumerate(boxes) if y1 <= top or y0 >= bottom}


def _ocr_blocks(page: pymupdf.Page) -> tuple[Page, list[Box]]:
    try:
        textpage = page.get_textpage_ocr(flags=_TEXT_FLAGS, language=OCR_LANGUAGE, dpi=OCR_DPI, full=True)
    except RuntimeError as error:
        hint = "" if ocr_available() else f"; {INSTALL_TESSERACT}"
        raise PdfError(f"OCR of page {page.number + 1} failed ({error}){hint}") from None
    return _blocks(page, textpage)


def choose_title(metadata_title: str, first_page: Page, boxes: list[Box], paragraphs: list[str]) -> tuple[str, bool]:
    """The document's title, and whether it came from the first page rather than the metadata.

    Metadata titles are often a file name, the application's name or a placeholder; then the title is the
    first page's largest text, found without font sizes (blocks carry none, and a dict extraction of page 1
    would cost more than all the cleaning) from line height: a block's height over its lines. It must stand
    out from the page's median and read as a title; else the first heading, else "".
    """
    if is_title_like(collapse_whitespace(metadata_title)):
        return collapse_whitespace(metadata_title), False
    candidates = []
    for lines, (x0, y0, x1, y1) in zip(first_page, boxes):
        lines = [line for line in lines if line.strip()]
        if lines:
            line_height = (y1 - y0) / len(lines)
            if x1 - x0 >= line_height:  # vertical text (an arXiv stamp) is tall, not large
                candidates.append((line_height, collapse_whitespace(" ".join(lines))))
    if len(candidates) > 1:
        typical = statistics.median(height for height, _ in candidates)
        height, text = max(candidates, key=lambda candidate: candidate[0])
        if height >= 1.2 * typical and is_title_like(text):
            return text, True
    heading = paragraphs[0] if paragraphs else ""
    return (heading, True) if is_title_like(heading) and not heading.endswith(".") else ("", False)


def _no_text_reason(raw_chars: int, fired: list[str], damage: str, image_pages: int, ocr: bool) -> str:
    """Why a file gave no document: what really happened, in one line."""
    if raw_chars:
        hint = "; keep it with --keep-back-matter" if "drop_back_matter" in fired else ""
        return f"cleaning removed all {raw_chars} characters of its text layer ({', '.join(fired)}){hint}"
    if damage:
        return f"damaged file, no text could be recovered ({damage}); get a complete copy"
    if image_pages and not ocr:
        return "no text layer (image-only or scanned PDF): rerun with --ocr (needs Tesseract)"
    if image_pages:
        return "no text layer, and OCR found no text in its images"
    return "no text and no images on any page (blank or drawings only)"


def read_pdf(path: str | Path, ocr: bool = False, keep_back_matter: bool = False) -> Document:
    """Extract and clean one PDF. Raises `PdfError` with a one-line reason when nothing usable remains.

    `ocr`: pages without a text layer that show an image are read by Tesseract. `keep_back_matter`: keep
    reference lists and licence boilerplate.
    """
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
        pages, margins, first_boxes, ocr_pages, image_pages = [], [], [], [], 0
        for page in doc:
            blocks, boxes = _blocks(page)
            if not any(line.strip() for block in blocks for line in block) and page.get_images():
                image_pages += 1
                if ocr:
                    blocks, boxes = _ocr_blocks(page)
                    ocr_pages.append(page.number + 1)
            pages.append(blocks)
            margins.append(_margin_blocks(boxes, page.rect.height))
            first_boxes = first_boxes or boxes
        metadata_title = (doc.metadata or {}).get("title") or ""
        mupdf_messages = pymupdf.TOOLS.mupdf_warnings().strip()
    if not pages:
        raise PdfError("no pages")
    cleaned = clean_pages(pages, margins, keep_back_matter)
    if not cleaned.paragraphs:
        raw_chars = sum(len(line.strip()) for page in pages for block in page for line in block)
        damage = mupdf_messages.splitlines()[0] if mupdf_messages else ("repaired on open" if warnings else "")
        raise PdfError(_no_text_reason(raw_chars, cleaned.fired, damage, image_pages, ocr))
    text = "\n\n".join(cleaned.paragraphs)
    title, from_page = choose_title(metadata_title, cleaned.first_page, first_boxes, cleaned.paragraphs)
    alphabetic, non_prose = text_quality(text)
    empty = sum(chars < EMPTY_PAGE_CHARS for chars in cleaned.page_chars)
    if empty * 2 > len(cleaned.page_chars):
        warnings.append(f"{empty} of {len(cleaned.page_chars)} pages are (almost) empty")
    if image_pages > len(ocr_pages):
        warnings.append(f"{image_pages - len(ocr_pages)} page(s) without a text layer skipped: rerun with --ocr")
    if alphabetic < MIN_ALPHABETIC_WORDS or non_prose > MAX_NON_PROSE_LINES:
        warnings.append(f"low text quality: {alphabetic:.0%} alphabetic words, {non_prose:.0%} non-prose lines")
    return Document(
        text=text,
        title=title,
        page_count=len(cleaned.page_chars),
        page_chars=cleaned.page_chars,
        warnings=warnings,
        language=detect_language(text),
        alphabetic_words=round(alphabetic, 3),
        non_prose_lines=round(non_prose, 3),
        rules=cleaned.fired + (["title_from_first_page"] if from_page else []),
        ocr_pages=ocr_pages,
        back_matter_chars=cleaned.back_matter_chars,
    )
