"""Each cleaning rule on its own, then `read_pdf` on real files, good and bad, built on the fly."""

from __future__ import annotations

import pymupdf
import pytest
from helpers import prose_pages, write_pdf

from climate_sft.pdf_text import (
    PdfError,
    clean_pages,
    collapse_whitespace,
    drop_page_furniture,
    join_hyphenated_words,
    join_split_paragraphs,
    join_wrapped_lines,
    normalize_unicode,
    read_pdf,
    split_heading,
)

# --- the rules ---------------------------------------------------------------------------------------


def test_normalize_unicode_folds_ligatures_and_drops_soft_hyphens():
    assert normalize_unicode("\ufb01rst \ufb02ood e\ufb03cient") == "first flood efficient"
    assert normalize_unicode("sea\u00a0level") == "sea level"
    assert normalize_unicode("precipi\u00adtation") == "precipitation"


def test_drop_page_furniture_removes_running_headers_footers_and_page_numbers():
    bodies = [["Warm water expands.", "Ice melts."], ["Rain falls.", "Rivers swell."], ["Heat builds."], ["Seas rise."]]
    pages = [[["Climate Primer Series - Oceans"], body, [str(n)]] for n, body in enumerate(bodies, 1)]
    pages[2][2] = ["Page 3 of 4"]
    assert drop_page_furniture(pages) == [[body] for body in bodies]


def test_drop_page_furniture_matches_headers_that_carry_the_page_number():
    bodies = ["Oceans store heat.", "Glaciers retreat.", "Forests burn."]
    pages = [[[f"Annual report {n}"], [body], ["Same footer text"]] for n, body in enumerate(bodies, 1)]
    assert drop_page_furniture(pages) == [[[body]] for body in bodies]


def test_drop_page_furniture_keeps_a_repeated_sentence_in_the_body():
    pages = [[[f"Intro {w}.", f"Second {w}.", "Repeated body sentence.", f"Fourth {w}.", f"End {w}."]] for w in "abc"]
    cleaned = drop_page_furniture(pages)
    assert all("Repeated body sentence." in page[0] for page in cleaned)


def test_drop_page_furniture_keeps_single_page_documents_whole():
    pages = [[["A title line"], ["Only page body."]]]
    assert drop_page_furniture(pages) == pages


def test_join_hyphenated_words():
    assert join_hyphenated_words("surface tempera-\nture rises") == "surface tempera\nture rises".replace("\n", "")
    # a capital or a number next to the break marks a real hyphen: only the line break goes
    assert join_hyphenated_words("sub-\nArctic") == "sub-Arctic"
    assert join_hyphenated_words("a 100-\nyear flood") == "a 100-year flood"
    assert join_hyphenated_words("no break - here") == "no break - here"


def test_join_hyphenated_words_keeps_compounds():
    assert join_hyphenated_words("a self-\nsustaining loop") == "a self-sustaining loop"
    # the document writes "sub-arctic" within a line elsewhere: that is the evidence
    assert join_hyphenated_words("the sub-\narctic zone", "... the sub-arctic coast ...") == "the sub-arctic zone"
    assert join_hyphenated_words("a dash -\nthen more") == "a dash -\nthen more"
    assert join_hyphenated_words("the sub-\ntropical zone") == "the subtropical zone"


def test_split_heading_from_its_paragraph():
    block = [
        "Will the sinks keep working?",
        "There are reasons to expect the natural sinks to",
        "become less effective as warming continues. Warmer",
        "water dissolves less carbon dioxide.",
    ]
    assert split_heading(block) == [block[:1], block[1:]]
    paragraph = ["The ocean has absorbed most of the extra heat that", "greenhouse gases trap, and it", "keeps rising."]
    assert split_heading(paragraph) == [paragraph]
    assert split_heading(["Short line.", "Another", "line"]) == [["Short line.", "Another", "line"]]
    wrapped = [
        "Instabilities and long-term",
        "commitments",
        "Large parts of the West Antarctic Ice Sheet rest",
        "on bedrock that lies well below sea level and",
        "deepens towards the interior.",
    ]
    assert split_heading(wrapped) == [wrapped[:2], wrapped[2:]]


def test_join_wrapped_lines_keeps_paragraph_breaks():
    text = "first line of one\nparagraph goes on\n\nsecond paragraph\nhere"
    assert join_wrapped_lines(text) == "first line of one paragraph goes on\n\nsecond paragraph here"


def test_join_split_paragraphs_rejoins_across_column_breaks():
    parts = ["Sea level rose by about twenty", "centimetres since 1900.", "A new paragraph starts."]
    assert join_split_paragraphs(parts) == [
        "Sea level rose by about twenty centimetres since 1900.",
        "A new paragraph starts.",
    ]
    assert join_split_paragraphs(["The carbon cy-", "cle moves carbon."]) == ["The carbon cycle moves carbon."]
    assert join_split_paragraphs(["Ends here.", "lower case start."]) == ["Ends here.", "lower case start."]


def test_collapse_whitespace():
    assert collapse_whitespace("  too   many \t spaces \n and lines ") == "too many spaces and lines"


def test_clean_pages_applies_every_rule_in_order():
    pages = [
        [["Series header"], ["The \ufb01rst line of a para-", "graph wraps here"], ["1"]],
        [["Series header"], ["and goes on after the page break."], ["2"]],
    ]
    paragraphs, page_chars = clean_pages(pages)
    assert paragraphs == ["The first line of a paragraph wraps here and goes on after the page break."]
    assert page_chars == [len("The first line of a paragraph wraps here"), len("and goes on after the page break.")]


# --- whole files -------------------------------------------------------------------------------------


def test_read_pdf_cleans_a_report(tmp_path):
    path = write_pdf(tmp_path / "report.pdf", prose_pages(3), title="Ocean heat")
    doc = read_pdf(path)
    assert doc.title == "Ocean heat" and doc.page_count == 3 and not doc.warnings
    assert "Climate Primer Series" not in doc.text
    assert "\n3\n" not in doc.text and not doc.text.rstrip().endswith("3")
    assert "greenhouse gases since the nineteen seventies" in doc.text  # wrapped lines joined


def test_title_falls_back_to_first_heading(tmp_path):
    pages = prose_pages(2)
    pages[0].insert(1, "Heat in the Ocean")
    pages[0].insert(2, "")
    assert read_pdf(write_pdf(tmp_path / "t.pdf", pages)).title == "Heat in the Ocean"


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(b"")
    with pytest.raises(PdfError, match="empty file"):
        read_pdf(tmp_path / "empty.pdf")


def test_garbage_bytes_named_pdf(tmp_path):
    (tmp_path / "garbage.pdf").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(PdfError, match="not a readable PDF"):
        read_pdf(tmp_path / "garbage.pdf")


def test_truncated_file_is_reported(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", prose_pages(6)).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 2])
    try:
        doc = read_pdf(tmp_path / "cut.pdf")
    except PdfError as error:
        assert "truncated" in str(error) or "not a readable PDF" in str(error)
    else:
        assert any("truncated" in w for w in doc.warnings)


def test_password_protected(tmp_path):
    path = write_pdf(
        tmp_path / "locked.pdf", prose_pages(1), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o"
    )
    with pytest.raises(PdfError, match="password-protected"):
        read_pdf(path)


def test_image_only_scan(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page()
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.clear_with(200)
    page.insert_image(pymupdf.Rect(72, 72, 300, 300), pixmap=pixmap)
    doc.save(tmp_path / "scan.pdf")
    with pytest.raises(PdfError, match="no text layer"):
        read_pdf(tmp_path / "scan.pdf")


def test_mostly_empty_pages_warn(tmp_path):
    pages = prose_pages(1) + [[" "], [" "], [" "]]
    doc = read_pdf(write_pdf(tmp_path / "sparse.pdf", pages))
    assert any("3 of 4 pages" in w for w in doc.warnings)


def test_bundled_pdfs_extract_to_their_source_text():
    """The sample corpus is generated from known text: extraction must give it back, paragraph for paragraph,
    through two-column layouts, running headers and footers, page numbers, hyphenation and a ligature font."""
    from climate_sft.corpus import SAMPLE_PDF_DIR

    sources = sorted((SAMPLE_PDF_DIR.parent / "source").glob("*.txt"))
    assert len(sources) >= 10
    for source in sources:
        expected = [p.removeprefix("## ").strip() for p in source.read_text().split("\n\n") if p.strip()]
        doc = read_pdf(SAMPLE_PDF_DIR / f"{source.stem}.pdf")
        assert doc.text.split("\n\n") == expected, source.name
        assert doc.title and not doc.warnings
