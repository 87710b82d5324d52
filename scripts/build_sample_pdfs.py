"""Render the sample corpus source texts (source/NN_slug.txt) into PDFs.

Layouts differ on purpose (page size, one or two columns, header/footer and
page-number styles, hyphenation, metadata) so that the PDF text cleaner has
realistic material to work on. Output is byte-for-byte reproducible.

    python -m scripts.build_sample_pdfs [--out DIR]
"""

import argparse
import hashlib
import re
from pathlib import Path

import pymupdf

HERE = Path(__file__).resolve().parents[1] / "climate_sft" / "sample_corpus"
FIXED_DATE = "D:20240101000000Z"  # fixed dates (and /ID) keep rebuilds byte-identical
LIGATURE_FI = "\ufb01"

# Base-14 fonts only encode Latin-1, so separators are ASCII (no em dash).
PRIMER = "Climate Primer Series | {short}"
ORG = "Northfield Climate Institute"
NOTE = "Climate SFT sample corpus - for training and testing"

# Header/footer bands are (left, centre, right) templates; None means no band.
LAYOUTS = {
    "01": dict(paper="a4", cols=1, serif=True, header=(PRIMER, "", ""), footer=("", "{n}", ""), meta_title=True),
    "02": dict(paper="letter", cols=2, serif=False, header=(PRIMER, "", "{n}"), footer=None),
    "03": dict(paper="a4", cols=2, serif=True, header=(ORG, "", "{short}"), footer=("", "", "Page {n}")),
    "04": dict(paper="letter", cols=1, serif=False, header=(PRIMER, "", ""), footer=(NOTE, "", "{n} of {total}")),
    "05": dict(
        paper="a4", cols=2, serif=False, header=(PRIMER, "", ""), footer=("", "{n} of {total}", ""), meta_title=True
    ),
    "06": dict(paper="a4", cols=1, serif=True, header=("Page {n}", "", PRIMER), footer=("", NOTE, "")),
    "07": dict(paper="letter", cols=2, serif=True, header=(PRIMER, "", ""), footer=("", "{n}", "")),
    "08": dict(paper="a4", cols=1, serif=True, header=(PRIMER, "", ""), footer=("", "", "Page {n}"), ligature=True),
    "09": dict(paper="letter", cols=1, serif=False, header=(ORG, "", ""), footer=(NOTE, "", "{n}"), meta_title=True),
    "10": dict(paper="a4", cols=2, serif=False, header=(PRIMER, "", "Page {n}"), footer=("", NOTE, "")),
    "11": dict(paper="letter", cols=1, serif=False, header=(ORG, "", "{short}"), footer=("{n}", "", "")),
    "12": dict(paper="letter", cols=2, serif=True, header=("{n}", "", PRIMER), footer=(NOTE, "", "")),
}

MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM, GUTTER = 76, 76, 72, 22
VOWELS = set("aeiouy")
# Consonant pairs that start a syllable together: break before them, never inside.
CLUSTERS = {"bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "ph", "pl", "pr", "sh", "th", "tr", "wh"}


def width(text, font, size):
    return pymupdf.get_text_length(text, fontname=font, fontsize=size)


def split_points(word):
    """Where a word may break at a line end (prefix lengths), longest prefix first.

    Compounds such as "human-caused" break after their own hyphen. Other words
    need 8+ letters and get a crude syllable rule: break before a consonant (or
    consonant cluster) followed by a vowel, keeping 3+ letters before and 4+ after.
    """
    core = word.rstrip(".,;:)")
    if "-" in core.strip("-"):
        return [i + 1 for i in range(len(core) - 2, 0, -1) if core[i] == "-"]
    low = core.lower()
    if len(core) < 8 or not core.isalpha():
        return []
    points = []
    for i in range(len(core) - 4, 2, -1):
        cluster_then_vowel = low[i : i + 2] in CLUSTERS and low[i + 2] in VOWELS
        consonant_then_vowel = low[i] not in VOWELS and low[i + 1] in VOWELS and low[i - 1 : i + 1] not in CLUSTERS
        if cluster_then_vowel or consonant_then_vowel:
            points.append(i)
    return points


def wrap(text, font, size, max_width, hyphenate=True):
    """Greedy line breaking; a word that does not fit is hyphenated if possible (never in headings)."""
    lines, line = [], ""
    words = re.split(r"\s+(?!°)", text.strip())  # keep "2 °C" together on one line
    while words:
        word = words.pop(0)
        candidate = f"{line} {word}" if line else word
        if width(candidate, font, size) <= max_width:
            line = candidate
            continue
        for i in split_points(word) if hyphenate else []:
            piece = word[:i] if word[i - 1] == "-" else word[:i] + "-"
            head = f"{line} {piece}" if line else piece
            if width(head, font, size) <= max_width:
                lines.append(head)
                words.insert(0, word[i:])
                line = ""
                break
        else:
            lines.append(line)
            line = word
    return lines + [line] if line else lines


def parse(path):
    """Return the title and a list of ("h" | "p", text) blocks."""
    title, *rest = path.read_text(encoding="utf-8").strip().split("\n\n")
    return title.strip(), [("h", b[3:].strip()) if b.startswith("## ") else ("p", b.strip()) for b in rest]


class Flow:
    """Places lines top to bottom in column frames, page after page.

    Items are collected per page in reading order (left column before right),
    which is also the order they are drawn, so page.get_text() reads them right.
    """

    def __init__(self, rect, cols):
        self.bottom = rect.height - MARGIN_BOTTOM
        self.col_width = (rect.width - 2 * MARGIN_X - (cols - 1) * GUTTER) / cols
        self.col_x = [MARGIN_X + c * (self.col_width + GUTTER) for c in range(cols)]
        self.pages, self.col, self.top = [[]], 0, MARGIN_TOP
        self.y = self.top

    def room(self, height):
        """Move to the next column (or page) unless `height` still fits."""
        if self.y + height <= self.bottom:
            return
        self.col += 1
        if self.col == len(self.col_x):
            self.pages.append([])
            self.col, self.top = 0, MARGIN_TOP
        self.y = self.top

    def line(self, text, font, size, lead, x=None):
        self.room(lead)
        self.pages[-1].append((x if x is not None else self.col_x[self.col], self.y + size, text, font, size))
        self.y += lead


def paginate(title, blocks, rect, lay):
    """Lay out title, headings and paragraphs; return per-page lists of line items."""
    body, bold = ("tiro", "tibo") if lay["serif"] else ("helv", "hebo")
    size = 10.5 if lay["cols"] == 1 else 9.5
    lead = size * 1.38
    flow = Flow(rect, lay["cols"])
    # The title spans all columns on page 1; the columns start below it.
    for text in wrap(title, bold, 18, rect.width - 2 * MARGIN_X):
        flow.line(text, bold, 18, 23, x=MARGIN_X)
    flow.top = flow.y = flow.y + 14
    for kind, text in blocks:
        if kind == "h":
            if flow.y > flow.top:
                flow.y += lead * 0.7
            flow.room(size * 1.6 + 2 * lead)  # keep a heading with its first two lines
            for piece in wrap(text, bold, size + 2, flow.col_width, hyphenate=False):
                flow.line(piece, bold, size + 2, (size + 2) * 1.4)
        else:
            for piece in wrap(text, body, size, flow.col_width):
                flow.line(piece, body, size, lead)
            flow.y += lead * 0.7  # visible gap between paragraphs
    return flow.pages


def draw_band(shape, y, templates, fields, font):
    """Draw a (left, centre, right) header or footer line at baseline y."""
    if templates is None:
        return
    page_width = shape.page.rect.width
    left, centre, right = (t.format(**fields) for t in templates)
    for text, x in (
        (left, MARGIN_X),
        (centre, (page_width - width(centre, font, 8)) / 2),
        (right, page_width - MARGIN_X - width(right, font, 8)),
    ):
        if text:
            shape.insert_text((x, y), text, fontname=font, fontsize=8)


def build(src, out_dir):
    lay = LAYOUTS[src.name[:2]]
    title, blocks = parse(src)
    rect = pymupdf.paper_rect(lay["paper"])
    pages = paginate(title, blocks, rect, lay)
    band_font = "tiro" if lay["serif"] else "helv"
    doc = pymupdf.open()
    for n, items in enumerate(pages, start=1):
        page = doc.new_page(width=rect.width, height=rect.height)
        if lay.get("ligature"):
            # Base-14 fonts cannot encode U+FB01, so the body uses an embedded copy of the same face.
            page.insert_font(fontname="ligtiro", fontbuffer=pymupdf.Font("tiro").buffer)
        # One shape = one content stream per page (small files), drawn header, body, footer:
        # the order page.get_text() returns.
        shape = page.new_shape()
        fields = dict(short=title.split(":")[0], n=n, total=len(pages))
        draw_band(shape, MARGIN_TOP - 30, lay["header"], fields, band_font)
        for x, y, text, font, size in items:
            if lay.get("ligature") and font == "tiro":
                text, font = text.replace("fi", LIGATURE_FI), "ligtiro"
            shape.insert_text((x, y), text, fontname=font, fontsize=size)
        draw_band(shape, rect.height - MARGIN_BOTTOM + 34, lay["footer"], fields, band_font)
        shape.commit()
    doc.set_metadata(
        {
            "title": title if lay.get("meta_title") else "",
            "creator": "climate_sft.sample_corpus.build_pdfs",  # the name the committed PDFs carry
            "creationDate": FIXED_DATE,
            "modDate": FIXED_DATE,
        }
    )
    doc.subset_fonts()  # shrinks the embedded ligature font; no-op elsewhere
    file_id = hashlib.md5(src.read_bytes()).hexdigest().upper()  # stable /ID instead of a random one
    doc.xref_set_key(-1, "ID", f"[<{file_id}><{file_id}>]")
    out = out_dir / f"{src.stem}.pdf"
    doc.save(out, garbage=4, deflate=True, no_new_id=True)
    return out, len(pages)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "pdfs", help="output directory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "source").glob("[0-9][0-9]_*.txt")):
        out, n_pages = build(src, args.out)
        print(f"{out.name}: {n_pages} pages, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
