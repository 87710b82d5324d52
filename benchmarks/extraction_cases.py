"""PDFs in hard layouts whose true text is known: the generated half of the extraction-quality benchmark.

    python -m benchmarks.extraction_cases OUT_DIR     # writes OUT_DIR/<case>.pdf and OUT_DIR/<case>.txt

Each case is one layout class: two columns, running headers and footers carrying the page number, a
line-numbered hearing transcript, footnotes, a long table, hyphenation with soft hyphens and unmapped glyphs,
slides with figure labels, an article with its back matter, and a page scanned from typeset text. The
reference text (`.txt`) is what a reader of the page would call its text: no page furniture, line numbers,
reference list or licence boilerplate, words whole. The prose is the bundled sample corpus (written for this
project). Deterministic: the same bytes on every run with the same pymupdf.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pymupdf

from climate_sft.corpus import SAMPLE_PDF_DIR
from scripts.build_sample_pdfs import wrap

SOURCES = sorted((SAMPLE_PDF_DIR.parent / "source").glob("*.txt"))
A4, LETTER = pymupdf.paper_rect("a4"), pymupdf.paper_rect("letter")
MARGIN = 72


def paragraphs(source: int, count: int | None = None) -> list[str]:
    """Body paragraphs (headings dropped) of sample document `source`."""
    blocks = SOURCES[source].read_text(encoding="utf-8").split("\n\n")[1:]
    return [b.strip() for b in blocks if b.strip() and not b.startswith("## ")][:count]


def title_of(source: int) -> str:
    return SOURCES[source].read_text(encoding="utf-8").split("\n", 1)[0].strip()


def headings(*sources: int) -> list[str]:
    return [
        b[3:].strip()
        for s in sources
        for b in SOURCES[s].read_text(encoding="utf-8").split("\n\n")
        if b.startswith("## ")
    ]


class Writer:
    """Lines placed top to bottom in columns, page after page, with optional furniture drawn on each page."""

    def __init__(self, rect=A4, columns=1, font="helv", size=10.5, furniture: Callable | None = None):
        self.doc, self.rect, self.font, self.size = pymupdf.open(), rect, font, size
        self.lead = size * 1.4
        self.columns, self.furniture = columns, furniture
        self.col_width = (rect.width - 2 * MARGIN - (columns - 1) * 20) / columns
        self.page = None
        self.new_page()

    def new_page(self):
        self.page = self.doc.new_page(width=self.rect.width, height=self.rect.height)
        self.column, self.y = 0, MARGIN
        if self.furniture:
            self.furniture(self.page, self.doc.page_count)

    def room(self, height: float):
        if self.y + height > self.rect.height - MARGIN:
            self.column += 1
            if self.column == self.columns:
                self.new_page()
            else:
                self.y = MARGIN

    def line(self, text: str, font=None, size=None, x_offset=0.0):
        size = size or self.size
        self.room(size * 1.4)
        x = MARGIN + self.column * (self.col_width + 20) + x_offset
        self.page.insert_text((x, self.y + size), text, fontname=font or self.font, fontsize=size)
        self.y += size * 1.4

    def paragraph(self, text: str, font=None, size=None, hyphenate=True):
        for piece in wrap(text, font or self.font, size or self.size, self.col_width, hyphenate):
            self.line(piece, font, size)
        self.y += (size or self.size) * 0.8

    def heading(self, text: str):
        self.room(self.size * 5)
        self.paragraph(text, font="hebo", size=self.size + 2, hyphenate=False)

    def pdf(self) -> bytes:
        self.doc.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
        return self.doc.tobytes(garbage=3, deflate=True, no_new_id=True)


def two_columns() -> tuple[bytes, str]:
    """A two-column report with headings and hyphenated ragged lines."""
    w = Writer(columns=2, size=9.5)
    text = [title_of(1)]
    w.paragraph(title_of(1), font="hebo", size=16, hyphenate=False)
    for n, para in enumerate(paragraphs(1) + paragraphs(2)):
        if n % 4 == 0:
            w.heading(f"Part {n // 4 + 1}")
            text.append(f"Part {n // 4 + 1}")
        w.paragraph(para)
        text.append(para)
    return w.pdf(), "\n\n".join(text)


def running_headers() -> tuple[bytes, str]:
    """Twelve pages whose header and footer carry the date and the page number (9 -> 10 changes its width)."""

    def furniture(page, n):
        page.insert_text(
            (MARGIN, 40), "Public Utilities Board - Climate Adaptation Hearing", fontname="helv", fontsize=8
        )
        footer = f"November 09, 2021 {n} 800.211.DEPO"
        page.insert_text((MARGIN, page.rect.height - 36), footer, fontname="helv", fontsize=8)

    w = Writer(rect=LETTER, furniture=furniture)
    body = [p for s in range(3, 9) for p in paragraphs(s)]
    for para in body:
        w.paragraph(para)
    while w.doc.page_count < 12:
        w.paragraph(body[w.doc.page_count])
        body.append(body[w.doc.page_count])
    return w.pdf(), "\n\n".join(body)


def transcript() -> tuple[bytes, str]:
    """A hearing transcript: 25 numbered lines a page, interpuncts as spacing, a footer with the page number."""
    turns = [
        ("CHAIRMAN REYES", "Good morning. We are here on the application for the coastal resilience program."),
        ("MS. OKAFOR", "Thank you. My name is Adaeze Okafor and I represent the regional water authority."),
    ]
    for n, para in enumerate(paragraphs(5) + paragraphs(10)):
        turns.append(("MS. OKAFOR" if n % 2 else "MR. LINDQVIST", para))
    doc, reference = pymupdf.open(), []
    lines: list[str] = []
    for speaker, said in turns:
        reference.append(f"{speaker}: {said}")
        text = f"{speaker}:  {said}".replace(".  ", ".\u00b7 ").replace(":  ", ":\u00b7 ")
        lines += wrap(text, "cour", 10, 430, hyphenate=False)
    for start in range(0, len(lines), 25):
        page = doc.new_page(width=LETTER.width, height=LETTER.height)
        for i, line in enumerate(lines[start : start + 25], 1):
            numbered = f"\u00b7{i}\u00b7 \u00b7{line}" if i < 10 else f"{i}\u00b7 \u00b7{line}"
            page.insert_text((60, 90 + 24 * i), numbered, fontname="cour", fontsize=10)
        footer = f"November 09, 2021 {doc.page_count} 800.211.DEPO"
        page.insert_text((200, LETTER.height - 40), footer, fontname="cour", fontsize=8)
    doc.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True), "\n\n".join(reference)


def footnotes() -> tuple[bytes, str]:
    """Body text with superscript note marks and footnotes set small at the foot of each page."""
    doc, reference = pymupdf.open(), []
    body = paragraphs(6) + paragraphs(7)
    notes = [
        "See the regional assessment for the station records behind these figures.",
        "Return periods are estimated from annual maxima over 1961-1990.",
        "The index combines temperature and humidity into one measure of heat stress.",
        "Soil moisture is taken from the reanalysis, not from gauges.",
        "Fire weather follows the Canadian index, computed daily.",
        "Compound events count days on which both thresholds are passed.",
        "Urban stations are kept, with their heat-island trend noted.",
        "Percentiles refer to the reference period of each station.",
        "Attribution statements use the multi-model ensemble.",
    ]
    next_note = iter(notes)
    for page_paras in (body[0:3], body[3:6], body[6:9]):
        page = doc.new_page(width=A4.width, height=A4.height)
        y = MARGIN
        page_notes: list[str] = []
        for para in page_paras:
            lines = wrap(para, "helv", 10.5, A4.width - 2 * MARGIN)
            for i, line in enumerate(lines):
                page.insert_text((MARGIN, y), line, fontname="helv", fontsize=10.5)
                if i == 1:  # a note mark after the second line's last word
                    mark = str(len(page_notes) + 1)
                    x = MARGIN + pymupdf.get_text_length(line, fontname="helv", fontsize=10.5)
                    page.insert_text((x, y - 4), mark, fontname="helv", fontsize=6.5)
                    page_notes.append(next(next_note))
                y += 14.7
            y += 8
            reference.append(para)
        y = A4.height - MARGIN - 12 * len(page_notes)
        page.draw_line((MARGIN, y - 10), (MARGIN + 150, y - 10))
        for n, note in enumerate(page_notes, 1):
            page.insert_text((MARGIN, y), f"{n} {note}", fontname="helv", fontsize=8)
            reference.append(f"{n} {note}")
            y += 12
    doc.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True), "\n\n".join(reference)


def long_table() -> tuple[bytes, str]:
    """A table of 150 rows over several pages: numbers, short labels, no sentences."""
    regions = ["Arctic", "Boreal", "Temperate", "Mediterranean", "Sahel", "Tropical", "Monsoon", "Alpine", "Coastal"]
    doc, reference = pymupdf.open(), ["Table 1: Observed warming and precipitation change by region and decade"]
    columns = [MARGIN, MARGIN + 140, MARGIN + 210, MARGIN + 310, MARGIN + 410]
    header = ["Region", "Decade", "Warming (C)", "Rainfall (%)", "Heat days"]
    rows = [
        [
            regions[i % 9],
            str(1950 + 10 * (i % 7)),
            f"{0.1 + (i * 37 % 23) / 10:.1f}",
            f"{(i * 13 % 31) - 15:+d}",
            str(i * 7 % 90),
        ]
        for i in range(150)
    ]
    reference.append(" ".join(header))
    reference += [" ".join(row) for row in rows]
    page, y = None, 0.0
    for n, row in enumerate([None, header, *rows]):
        if page is None or y > A4.height - MARGIN:
            page, y = doc.new_page(width=A4.width, height=A4.height), MARGIN
        if row is None:
            page.insert_text((MARGIN, y), reference[0], fontname="hebo", fontsize=10)
        else:
            for x, cell in zip(columns, row):
                page.insert_text((x, y), cell, fontname="hebo" if n == 1 else "helv", fontsize=9)
        y += 14
    doc.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True), "\n\n".join(reference)


def hyphenation() -> tuple[bytes, str]:
    """Words broken at line ends by a hyphen, a soft hyphen (U+00AD), or a hyphen and a space; a URL and
    words carrying a glyph the font does not map (extracted as U+FFFD); compounds that keep their hyphen."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4.width, height=A4.height)
    page.insert_font(fontname="tiroemb", fontbuffer=pymupdf.Font("tiro").buffer)
    reference, y = [], MARGIN
    breaks = ["-", "\u00ad", "- "]
    for n, para in enumerate(paragraphs(0, 6)):
        if n == 4:
            para += " The data are at https://doi.org/10.5194/essd-15-2295-2023 for anyone to check."
        lines = wrap(para, "tiro", 11, 300)
        for line in lines:  # the sample's own hyphen breaks become soft ones or get a trailing space in turn
            if line.endswith("-") and not line.endswith("--") and line[-2:-1].isalpha():
                line = line[:-1] + breaks[n % 3]
            line = line.replace("https://doi.org/", "https://doi.org/\u200b")
            page.insert_text((MARGIN, y), line, fontname="tiroemb", fontsize=11)
            y += 15
        y += 8
        reference.append(para)
        if y > A4.height - 2 * MARGIN:
            page, y = doc.new_page(width=A4.width, height=A4.height), MARGIN
            page.insert_font(fontname="tiroemb", fontbuffer=pymupdf.Font("tiro").buffer)
    doc.subset_fonts()
    doc.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True), "\n\n".join(reference)


def slides() -> tuple[bytes, str]:
    """Landscape slides: a large title, bullets, a figure with its label (and placement debris after it),
    a repeated footer with the slide number."""
    doc, reference = pymupdf.open(), []
    rect = pymupdf.Rect(0, 0, 960, 540)
    bullets = [p.split(". ") for p in paragraphs(9, 6)]
    titles, labels = headings(9, 11)[:6], headings(3, 4, 5)[:6]
    for n, (sentences, title, label) in enumerate(zip(bullets, titles, labels), 1):
        page = doc.new_page(width=rect.width, height=rect.height)
        page.insert_text((50, 70), title, fontname="hebo", fontsize=28)
        reference.append(title)
        y = 120
        for sentence in sentences[:4]:
            sentence = sentence.rstrip(".") + "."
            for i, line in enumerate(wrap(sentence, "helv", 16, 480, hyphenate=False)):
                page.insert_text(
                    (50 if i == 0 else 68, y), ("\u2022 " if i == 0 else "") + line, fontname="helv", fontsize=16
                )
                y += 22
            reference.append(sentence)
            y += 6
        page.draw_rect(pymupdf.Rect(600, 120, 910, 380), color=(0.2, 0.4, 0.7), fill=(0.85, 0.9, 0.95))
        label = f"Figure {n}: {label}"
        debris = f"[BB:{600 + n}.35;229.56;{910 - n}.0;380.2]"
        page.insert_text((560, 400), label + debris, fontname="helv", fontsize=10)
        reference.append(label)
        page.insert_text(
            (50, 515), f"Ministry of Environment | Climate Workshop 2024 | {n}", fontname="helv", fontsize=10
        )
    doc.set_metadata(
        {"title": "PowerPoint Presentation", "creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"}
    )
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True), "\n\n".join(reference)


REFERENCES = [
    (
        "Arias, P. A., et al. (2021). Technical Summary. In Climate Change 2021: The Physical Science Basis. "
        "Cambridge University Press. https://doi.org/10.1017/9781009157896.002"
    ),
    "Fox-Kemper, B., et al. (2021). Ocean, Cryosphere and Sea Level Change. Cambridge University Press.",
    "Friedlingstein, P., et al. (2023). Global Carbon Budget 2023. Earth System Science Data, 15, 5301-5369.",
    (
        "Hausfather, Z., and Peters, G. P. (2020). Emissions - the 'business as usual' story is misleading. "
        "Nature, 577, 618-620."
    ),
    (
        "Meinshausen, M., et al. (2022). Realization of Paris Agreement pledges may limit warming just below "
        "2 C. Nature, 604, 304-309. https://doi.org/10.1038/s41586-022-04553-z"
    ),
    (
        "Seneviratne, S. I., et al. (2021). Weather and Climate Extreme Events in a Changing Climate. "
        "Cambridge University Press."
    ),
] * 3


def back_matter() -> tuple[bytes, str]:
    """An open-access article: body, then acknowledgements, author contributions, competing interests, a
    reference list, and the licence and publisher boilerplate. Only the body is its text."""
    w = Writer(size=10)
    text = [title_of(11)]
    w.paragraph(title_of(11), font="hebo", size=16, hyphenate=False)
    for n, para in enumerate(paragraphs(11, 8)):
        if n % 3 == 0:
            w.heading(["Introduction", "Methods", "Results and discussion"][n // 3])
            text.append(["Introduction", "Methods", "Results and discussion"][n // 3])
        w.paragraph(para)
        text.append(para)
    back = {
        "Acknowledgements": "We thank the station operators who kept the records going through two decades.",
        "Author contributions": "A.B. designed the study; C.D. ran the analysis; both wrote the paper.",
        "Competing interests": "The authors declare no competing interests.",
    }
    for heading, para in back.items():
        w.heading(heading)
        w.paragraph(para)
    w.heading("References")
    for ref in REFERENCES:
        w.paragraph(ref, size=8.5, hyphenate=False)
    for para in (
        (
            "Open Access This article is licensed under a Creative Commons Attribution 4.0 International License, "
            "which permits use, sharing, adaptation, distribution and reproduction in any medium or format."
        ),
        "Reprints and permission information is available at http://www.nature.com/reprints",
        (
            "Publisher's note Springer Nature remains neutral with regard to jurisdictional claims in published maps "
            "and institutional affiliations."
        ),
    ):
        w.paragraph(para, size=8.5, hyphenate=False)
    return w.pdf(), "\n\n".join(text)


def scan() -> tuple[bytes, str]:
    """A page typeset, rendered to a 200 dpi greyscale image and put back as an image-only page."""
    source, reference = typeset_prose()
    scanned = pymupdf.open()
    with pymupdf.open(stream=source) as typeset:
        for page in typeset:
            pixmap = page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY)
            image_page = scanned.new_page(width=page.rect.width, height=page.rect.height)
            image_page.insert_image(image_page.rect, pixmap=pixmap)
    scanned.set_metadata({"creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    return scanned.tobytes(garbage=3, deflate=True, no_new_id=True), reference


def typeset_prose() -> tuple[bytes, str]:
    """The scan's source: a page of one-column prose in 11 pt Times."""
    w = Writer(font="tiro", size=11)
    text = paragraphs(4, 5)
    for para in text:
        w.paragraph(para)
    return w.pdf(), "\n\n".join(text)


CASES: dict[str, Callable[[], tuple[bytes, str]]] = {
    "two_columns": two_columns,
    "running_headers": running_headers,
    "transcript": transcript,
    "footnotes": footnotes,
    "long_table": long_table,
    "hyphenation": hyphenation,
    "slides": slides,
    "back_matter": back_matter,
    "scan": scan,
}


def write_cases(out_dir: Path) -> list[Path]:
    """Write every case as OUT/<class>.pdf with its reference OUT/<class>.txt; returns the PDF paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in CASES.items():
        pdf, reference = build()
        (out_dir / f"{name}.pdf").write_bytes(pdf)
        (out_dir / f"{name}.txt").write_text(re.sub(r"[ \t]+", " ", reference) + "\n", encoding="utf-8")
        paths.append(out_dir / f"{name}.pdf")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    for path in write_cases(parser.parse_args().out_dir):
        print(path)


if __name__ == "__main__":
    main()
