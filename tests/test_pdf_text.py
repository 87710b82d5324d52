"""Each cleaning rule on its own, then `read_pdf` on real files, good and bad, built on the fly."""

from __future__ import annotations

import pymupdf
import pytest
from helpers import PROSE, prose_pages, write_pdf

from climate_sft.pdf_text import PdfError, choose_title, ocr_available, read_pdf
from climate_sft.text_rules import (
    clean_pages,
    collapse_whitespace,
    detect_language,
    drop_back_matter,
    drop_layout_debris,
    drop_line_numbers,
    drop_page_furniture,
    is_title_like,
    join_hyphenated_words,
    join_split_paragraphs,
    join_wrapped_lines,
    normalize_unicode,
    split_heading,
    text_quality,
)

# --- the rules ---------------------------------------------------------------------------------------


def non_empty(pages):
    """Pages without the blocks a rule emptied (rules keep blocks in place for their boxes)."""
    return [[block for block in page if block] for page in pages]


def test_normalize_unicode_folds_ligatures_and_drops_soft_hyphens():
    assert normalize_unicode("\ufb01rst \ufb02ood e\ufb03cient") == "first flood efficient"
    assert normalize_unicode("sea\u00a0level") == "sea level"
    assert normalize_unicode("precipi\u00adtation") == "precipitation"


def test_normalize_unicode_drops_invisible_characters_and_keeps_line_end_soft_hyphens():
    assert normalize_unicode("https://doi.org/\u200b10.1038/x\ufeff") == "https://doi.org/10.1038/x"
    assert normalize_unicode("con\ufffdfidence") == "confidence"
    assert normalize_unicode("impor\u00ad\ntant") == "impor\u00ad\ntant"  # for join_hyphenated_words
    assert normalize_unicode("\u200cZWNJ stays") == "\u200cZWNJ stays"  # it shapes Persian and Indic words


def test_normalize_unicode_sets_inline_math_letters_apart():
    assert normalize_unicode("where \U0001d444is flow and \U0001d44eand \U0001d44fdetermine it") == (
        "where Q is flow and a and b determine it"
    )
    assert normalize_unicode("d\U0001d444 = \U0001d44e\U0001d444\U0001d44f") == "dQ = aQb"  # a product stays whole


def test_drop_layout_debris():
    assert drop_layout_debris("Figure 1[BB:45.35;229.56;549.9;474.6] Sea level") == "Figure 1 Sea level"
    assert drop_layout_debris("see [B] and [BB] here") == "see [B] and [BB] here"


TRANSCRIPT_PAGE = [
    ["\u00b71\u00b7 \u00b7 \u00b7 \u00b7BEFORE THE PUBLIC UTILITIES COMMISSION"],
    ["\u00b72\u00b7 \u00b7MS. OKAFOR:\u00b7 My name is Adaeze Okafor and I"],
    ["\u00b73\u00b7 \u00b7represent the regional water authority.\u00b7 The"],
    ["\u00b74\u00b7 \u00b7market development program for heat pumps"],
    ["\u00b75\u00b7 \u00b7began in 2019.\u00b7 Its budget is kg\u00b7m-free."],
    ["10\u00b7 \u00b7Thank you."],
    ["\u00b76\u00b7 \u00b7Q.\u00b7 And the second phase?"],
]


def test_drop_line_numbers_of_a_transcript_page():
    cleaned = drop_line_numbers(TRANSCRIPT_PAGE)
    assert cleaned[0] == ["BEFORE THE PUBLIC UTILITIES COMMISSION"]
    assert cleaned[1] == ["MS. OKAFOR: My name is Adaeze Okafor and I"]
    assert cleaned[4] == ["began in 2019. Its budget is kg\u00b7m-free."]  # a middle dot inside a word stays
    assert cleaned[5] == ["10 Thank you."]  # 10 does not count on from its neighbours: not a line number
    assert cleaned[6] == ["Q. And the second phase?"]


def test_drop_line_numbers_of_a_margin_column():
    """Manuscript drafts number lines in a column of their own, which extraction interleaves with the text;
    a year or an affiliation mark opening a line is no line number."""
    page = [
        ["A draft title", "1", "continues here", "2"],
        ["Fabian Hofmann", "1", "3"],
        ["1 Institute of Energy Technology", "4"],
        ["Summary", "5", "The model runs fast", "6", "2020 was a record year", "7", "and the end.", "8"],
    ]
    assert non_empty(drop_line_numbers(page)) == [
        ["A draft title", "continues here"],
        ["Fabian Hofmann", "1"],
        ["1 Institute of Energy Technology"],
        ["Summary", "The model runs fast", "2020 was a record year", "and the end."],
    ]


def test_drop_line_numbers_leaves_other_pages_alone():
    numbered_list = [["1. Reduce emissions", "2. Adapt", "3. Restore", "4. Monitor", "5. Report", "6. Review"]]
    few_numbers = [["Intro text here", "1 keeps", "2 going", "3 on", "and on"]] + [[f"line {i}"] for i in range(20)]
    sections = [
        ["1 Introduction"],
        ["Text."] * 6,
        ["2 Data"],
        ["Text."] * 6,
        ["3 Methods"],
        ["4 Results"],
        ["Text."] * 20,
        ["5 Discussion"],
        ["6 Conclusions"],
    ]
    for page in (numbered_list, few_numbers, sections):
        assert drop_line_numbers(page) is page


def test_drop_page_furniture_removes_running_headers_footers_and_page_numbers():
    bodies = [["Warm water expands.", "Ice melts."], ["Rain falls.", "Rivers swell."], ["Heat builds."], ["Seas rise."]]
    pages = [[["Climate Primer Series - Oceans"], body, [str(n)]] for n, body in enumerate(bodies, 1)]
    pages[2][2] = ["Page 3 of 4"]
    assert non_empty(drop_page_furniture(pages)) == [[body] for body in bodies]


def test_drop_page_furniture_matches_headers_that_carry_the_page_number():
    bodies = ["Oceans store heat.", "Glaciers retreat.", "Forests burn."]
    pages = [[[f"Annual report {n}"], [body], ["Same footer text"]] for n, body in enumerate(bodies, 1)]
    assert non_empty(drop_page_furniture(pages)) == [[[body]] for body in bodies]


def test_drop_page_furniture_keeps_a_repeated_sentence_in_the_body():
    pages = [[[f"Intro {w}.", f"Second {w}.", "Repeated body sentence.", f"Fourth {w}.", f"End {w}."]] for w in "abc"]
    cleaned = drop_page_furniture(pages)
    assert all("Repeated body sentence." in page[0] for page in cleaned)


def test_drop_page_furniture_masks_every_run_of_digits():
    """Page 9's footer and page 10's differ in length, not only in digits."""
    bodies = ["Oceans store heat.", "Glaciers retreat.", "Forests burn.", "Seas rise."]
    pages = [[[body], [f"November 09, 2021 {n} 800.211.DEPO"]] for n, body in zip(range(8, 12), bodies)]
    assert non_empty(drop_page_furniture(pages)) == [[[body]] for body in bodies]


def test_drop_page_furniture_finds_footers_in_the_margin_band_wherever_the_stream_puts_them():
    pages = [
        [
            [f"{w} opens.", f"{w} goes on."],
            ["Smith (2022). Journal of Open Source Software"],
            [f"{w} ends.", f"{w} stops."],
        ]
        for w in ("Heat", "Ice", "Rain", "Fire")
    ]
    assert drop_page_furniture(pages) == pages  # mid-stream: not a candidate by position
    cleaned = drop_page_furniture(pages, margins=[{1}] * 4)
    assert all(page[1] == [] for page in cleaned)


def test_drop_page_furniture_needs_page_numbers_that_count_with_the_pages():
    """A table's first cell at the top of each page is a number too, but not one that counts with the pages."""
    rows = ["Arctic warms fastest.", "Boreal forests burn.", "Sahel rain varies.", "Monsoons shift."]
    tables = [[["2010"], [row], [str(n * 7 + 3)]] for n, row in enumerate(rows)]
    assert drop_page_furniture(tables) == tables
    numbered = [[[f"Text {n}."], [str(n + 3)]] for n in range(4)]  # numbering starting at 3 still counts
    assert non_empty(drop_page_furniture(numbered)) == [[[f"Text {n}."]] for n in range(4)]


def test_drop_page_furniture_never_empties_a_page():
    """A short notice whose two pages repeat the same lines is text, not running headers."""
    pages = [[["Water restrictions apply from 1 June."], ["Call 555 0100 for exemptions."], [str(n)]] for n in (1, 2)]
    assert (
        non_empty(drop_page_furniture(pages))
        == [[["Water restrictions apply from 1 June."], ["Call 555 0100 for exemptions."]]] * 2
    )


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


def test_join_hyphenated_words_at_soft_hyphens_and_spaced_hyphens():
    assert join_hyphenated_words("an impor\u00ad\ntant com\u00ad\nmunity") == "an important community"
    assert join_hyphenated_words("Self\u00ad\nDriven") == "SelfDriven"  # the typesetter's break: always joined
    assert join_hyphenated_words("unprece- \ndented") == "unprecedented"
    assert join_hyphenated_words("a dash - \nthen more") == "a dash -\nthen more"


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


ARTICLE_END = [
    "Results",
    "Warming continues at the rate the models expected.",
    "Acknowledgements",
    "We thank the station operators.",
    "Author contributions A.B. designed the study and C.D. ran it.",
    "References",
    "Arias, P. A., et al. (2021). Technical Summary. Cambridge University Press.",
    "IPCC (2021) Climate Change 2021",
    "Fox-Kemper, B., et al. (2021). Ocean, Cryosphere and Sea Level Change.",
    "Methods",
    "Stations were homogenised before trends were fitted.",
    "Open Access This article is licensed under a Creative Commons Attribution 4.0 International License.",
    "Publisher's note Springer Nature remains neutral with regard to jurisdictional claims.",
]


def test_drop_back_matter_keeps_the_article_text():
    kept, dropped = drop_back_matter(ARTICLE_END)
    assert kept == [
        "Results",
        "Warming continues at the rate the models expected.",
        "Methods",
        "Stations were homogenised before trends were fitted.",
    ]
    assert dropped == sum(map(len, ARTICLE_END)) - sum(map(len, kept))


def test_drop_back_matter_control_keeps_prose_that_names_back_matter():
    prose = [
        "References to sea level in the old charts are rare.",
        "Funding for dikes rose in 2020.",
        "Our acknowledgement of uncertainty matters here.",
        "Funding",  # a policy report's section on money for adaptation, not an article's funding statement
        "The adaptation fund pays for sea walls in twelve towns.",
    ]
    assert drop_back_matter(prose) == (prose, 0)


def test_detect_language():
    english = "The ocean has absorbed most of the extra heat that greenhouse gases trap near the surface. " * 5
    french = "Le réchauffement observé depuis le milieu du siècle est surtout dû aux activités humaines. " * 5
    assert detect_language(english) == "en" and detect_language(french) == "fr"
    assert detect_language("12 13 14 \u00b7 \u00b7 ---- ####") == ""


def test_text_quality_tells_prose_from_tables():
    prose = "\n\n".join(["The ocean stores heat and releases it slowly over decades."] * 4)
    assert text_quality(prose) == (1.0, 0.0)
    alphabetic, non_prose = text_quality("\n\n".join(["2010 12.5 13.4 -0.2", "Arctic 1.2 3.4 5.6 7.8"] * 5))
    assert alphabetic == pytest.approx(1 / 9) and non_prose == 1.0


def test_is_title_like():
    for bad in (
        "Microsoft Word - Clean Energy Cess Rules 2010",
        "IPCC-AR6_WGI_SPM_Stand_Alone_WMO_FR_06.indd",
        "DATE",
        "www.gazprom.com",
        "",
        "PowerPoint Presentation",
        "report_final_v2.docx",
    ):
        assert not is_title_like(bad), bad
    for good in (
        "Climate Change 2021: The Physical Science Basis",
        "Sea Level Rise",
        "Résumé à l'intention des décideurs",
    ):
        assert is_title_like(good), good


def test_choose_title_takes_the_largest_text_of_page_one_when_metadata_is_a_file_name():
    first_page = [["Report series 12"], ["Coastal Flood Risk in 2050"], ["Body text line one", "line two", "three"]]
    boxes = [(72, 40, 300, 52), (72, 80, 500, 110), (72, 130, 500, 172)]  # line heights 12, 30, 14
    assert choose_title("Microsoft Word - draft3.docx", first_page, boxes, []) == ("Coastal Flood Risk in 2050", True)
    assert choose_title("Sea Level Rise Explained", first_page, boxes, []) == ("Sea Level Rise Explained", False)
    same_size = [(72, 80, 500, 94), (72, 100, 500, 114)]
    assert choose_title("", [["Body text"], ["More body"]], same_size, ["Heat in the Ocean", "Text."]) == (
        "Heat in the Ocean",
        True,
    )
    vertical = [["arXiv:2101.00001v1 [cs.CL] 1 Jan 2021"], ["Body text here"], ["More body text"]]
    assert choose_title("", vertical, [(20, 100, 32, 600), (72, 80, 500, 94), (72, 100, 500, 114)], []) == ("", False)


def test_collapse_whitespace():
    assert collapse_whitespace("  too   many \t spaces \n and lines ") == "too many spaces and lines"


def test_clean_pages_applies_every_rule_in_order():
    pages = [
        [["Series header"], ["The \ufb01rst line of a para-", "graph wraps here"], ["1"]],
        [["Series header"], ["and goes on after the page break."], ["2"]],
    ]
    cleaned = clean_pages(pages)
    assert cleaned.paragraphs == ["The first line of a paragraph wraps here and goes on after the page break."]
    assert cleaned.page_chars == [
        len("The first line of a paragraph wraps here"),
        len("and goes on after the page break."),
    ]
    assert cleaned.fired == [
        "normalize_unicode",
        "drop_page_furniture",
        "join_hyphenated_words",
        "join_split_paragraphs",
    ]


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
    with pytest.raises(PdfError, match=r"no text layer \(image-only or scanned PDF\): rerun with --ocr"):
        read_pdf(tmp_path / "scan.pdf")


def scanned_pdf(path, pages):
    """An image-only PDF: `pages` typeset in Helvetica, rendered at 200 dpi, the images put back as pages."""
    typeset = pymupdf.open(write_pdf(path.with_suffix(".typeset.pdf"), pages))
    scan = pymupdf.open()
    for page in typeset:
        scan.new_page().insert_image(page.rect, pixmap=page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY))
    scan.save(path)
    return path


@pytest.mark.skipif(not ocr_available(), reason="Tesseract is not installed (apt-get install tesseract-ocr)")
def test_ocr_reads_pages_without_a_text_layer(tmp_path):
    path = scanned_pdf(tmp_path / "scan.pdf", prose_pages(1))
    doc = read_pdf(path, ocr=True)
    assert doc.ocr_pages == [1] and "thermal expansion raises sea level" in doc.text
    expected = set(PROSE.lower().split())
    assert len(expected & set(doc.text.lower().split())) >= 0.95 * len(expected)


def test_ocr_without_tesseract_says_how_to_install_it(tmp_path, monkeypatch):
    def no_tesseract(*args, **kwargs):
        raise RuntimeError("No tessdata specified and Tesseract is not installed")

    monkeypatch.setattr(pymupdf.Page, "get_textpage_ocr", no_tesseract)
    monkeypatch.setattr("climate_sft.pdf_text.ocr_available", lambda: False)
    (tmp_path / "scan.pdf").write_bytes(make_blank_image_pdf())
    with pytest.raises(PdfError, match="OCR of page 1 failed .*apt-get install tesseract-ocr"):
        read_pdf(tmp_path / "scan.pdf", ocr=True)


def make_blank_image_pdf() -> bytes:
    doc = pymupdf.open()
    pixmap = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 32, 32), False)
    pixmap.clear_with(255)
    doc.new_page().insert_image(pymupdf.Rect(72, 72, 200, 200), pixmap=pixmap)
    return doc.tobytes()


def test_text_removed_by_cleaning_is_not_called_a_missing_text_layer(tmp_path):
    """The reason says what happened: here the whole text was a reference list."""
    refs = [f"Author {n}, A. (20{10 + n}). A paper on sea level. Journal of Coasts, {n}, 1-9." for n in range(8)]
    path = write_pdf(tmp_path / "refs.pdf", [["References", "", *refs]])
    with pytest.raises(PdfError, match=r"cleaning removed all \d+ characters .*drop_back_matter.*--keep-back-matter"):
        read_pdf(path)
    doc = read_pdf(path, keep_back_matter=True)
    assert "Journal of Coasts" in doc.text and doc.back_matter_chars == 0 and "drop_back_matter" not in doc.rules


def test_short_document_of_repeated_lines_keeps_its_text(tmp_path):
    """Two pages that say the same thing were once stripped as 'running headers' and called a scan."""
    notice = ["Water restrictions apply from 1 June.", "", "Call the council for exemptions."]
    doc = read_pdf(write_pdf(tmp_path / "notice.pdf", [notice, notice]))
    assert doc.text.count("Water restrictions apply from 1 June.") == 2


def test_damaged_file_is_not_called_a_scan(tmp_path):
    """A page whose content stream is corrupt opens without repair and shows no text: MuPDF's error says why."""
    data = bytearray(write_pdf(tmp_path / "good.pdf", prose_pages(1), deflate=True).read_bytes())
    start = data.index(b"stream\n") + len(b"stream\n")
    data[start + 2 : data.index(b"endstream", start) - 2] = b"A" * (data.index(b"endstream", start) - 4 - start)
    (tmp_path / "bad.pdf").write_bytes(bytes(data))
    with pytest.raises(PdfError, match=r"damaged file, no text could be recovered \(.*zlib"):
        read_pdf(tmp_path / "bad.pdf")


def test_read_pdf_reports_language_quality_rules_and_back_matter(tmp_path):
    french = (
        "Le niveau de la mer monte parce que les océans se réchauffent et que les glaciers fondent "
        "depuis le début du siècle dernier, et cette hausse s'accélère."
    )
    pages = [[french[:72], french[72:], "", "Références", "", "Dupont, J. (2020). Les mers. Paris, 1-9."]]
    doc = read_pdf(write_pdf(tmp_path / "fr.pdf", pages, title="DATE"))
    assert doc.language == "fr" and doc.title == ""
    assert 0.9 < doc.alphabetic_words <= 1 and doc.non_prose_lines == 0
    assert doc.back_matter_chars > 0 and doc.rules[-1] == "drop_back_matter"
    table = [" ".join(str(n * k) for k in range(1, 9)) for n in range(1, 30)]
    assert any("low text quality" in w for w in read_pdf(write_pdf(tmp_path / "t.pdf", [table])).warnings)


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
