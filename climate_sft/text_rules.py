"""The cleaning rules: a PDF's text blocks -> the document's paragraphs. Pure text, no pymupdf.

`clean_pages` applies them in this order; each is a small function with its own test, and `Cleaned.fired`
names the ones that changed something (the manifest's "rules" field):

1. `normalize_unicode`      ligatures (U+FB01 -> "fi"), non-breaking spaces, zero-width spaces, U+FFFD,
                            soft hyphens inside a line; math italic letters set apart from the next word
2. `drop_layout_debris`     figure-placement markers that layout tools leave in the text ("[BB:45.35;...]")
3. `drop_line_numbers`      numbered lines of transcripts and manuscript drafts, interpunct leaders
4. `drop_page_furniture`    running headers/footers that repeat across pages (digits masked), page numbers;
                            never all of a page's text
5. `split_heading`          a heading set on the first line of a paragraph's block becomes its own line
6. `join_hyphenated_words`  "tempera-\\nture" -> "temperature", soft-hyphen breaks, "unprece- \\ndented";
                            "self-\\nsustaining" keeps its hyphen
7. `join_wrapped_lines`     lines of one paragraph -> one line; paragraph breaks stay
8. `join_split_paragraphs`  a paragraph cut by a column or page break is made whole again
9. `drop_back_matter`       reference lists, acknowledgements, author contributions, competing interests,
                            licence and permission boilerplate (off with keep_back_matter)

Then two measures that clean nothing: `detect_language` and `text_quality`, and `is_title_like`, which
`pdf_text` uses to choose a title.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

Page = list[list[str]]  # a page is a list of text blocks, a block a list of lines

_PAGE_NUMBER = re.compile(r"(?:page\s*)?(\d{1,4})(?:\s*(?:of|/)\s*\d{1,4})?", re.IGNORECASE)
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


# --- 1-2: characters -------------------------------------------------------------------------------------

# Zero-width space, word joiner, zero-width no-break space (BOM) and the replacement character (a glyph the
# PDF gave no Unicode for): invisible or meaningless, and they split words and URLs.
_INVISIBLE_CHARS = "\u200b\u2060\ufeff\ufffd"
_INVISIBLE = dict.fromkeys(map(ord, _INVISIBLE_CHARS))
_INNER_SOFT_HYPHEN = re.compile("\u00ad(?![ \t]*(?:\n|$))")


def normalize_unicode(text: str) -> str:
    """NFKC folds ligatures and compatibility forms (math italic letters too, once `separate_math_letters` has
    set them apart from the words the PDF ran them into); invisible characters go. A soft hyphen inside a line is
    invisible in print and goes; one at a line end is where the typesetter broke a word, and stays for
    `join_hyphenated_words` (deleting it first left "impor tant")."""
    text = unicodedata.normalize("NFKC", separate_math_letters(text))
    if any(c in text for c in _INVISIBLE_CHARS):  # a dict translate of the whole text costs more than the scans
        text = text.translate(_INVISIBLE)
    return _INNER_SOFT_HYPHEN.sub("", text) if "\u00ad" in text else text


# A letter from the Mathematical Alphanumeric Symbols block followed by an ordinary letter: LaTeX sets no space
# after inline math ("𝑄is streamflow"), and NFKC would then fold it into one word ("Qis").
_MATH_LETTER_RUN_ON = re.compile("([\U0001d400-\U0001d7ff])(?=[^\\W\\d_\U0001d400-\U0001d7ff])")


def separate_math_letters(text: str) -> str:
    """Put a space between an inline-math letter and the word the PDF ran it into ("𝑎and 𝑏" -> "𝑎 and 𝑏");
    a product of math letters ("𝑎𝑄𝑏") stays whole."""
    return _MATH_LETTER_RUN_ON.sub(r"\1 ", text)


_LAYOUT_DEBRIS = re.compile(r"\[BB:[^\]\n]{0,200}\]")


def drop_layout_debris(text: str) -> str:
    """Figure-placement markers some layout tools write as invisible text ("Figure 1[BB:45.35;229.56;...]")
    are no part of the prose."""
    return _LAYOUT_DEBRIS.sub("", text) if "[BB:" in text else text


# --- 3-4: lines that are not text ---------------------------------------------------------------------------

_LINE_NUMBER = re.compile(r"[ \t\u00b7]*(\d{1,5})(?=[\s\u00b7]|$)")
# Transcripts set interpuncts as spacing ("Okay.· And", "·1· · · ·BEFORE THE"); one between two letters
# ("l·l") is a real character and stays.
_LEADERS = re.compile(r"(?:(?<=\s)|^)\u00b7+|\u00b7+(?=\s|$)")


def drop_line_numbers(page: Page) -> Page:
    """Remove the numbers of a line-numbered page and join nothing else.

    Hearing transcripts and manuscript drafts number every line, in a margin column of its own ("12" as a
    line) or before the text with interpunct leaders ("·17· ·market development"). A leading number counts as
    a line number when one of the next three numbered lines counts on by one (or one of the previous three
    counts up to it), which a year or an affiliation mark opening a line does not; a page is line-numbered
    when at least five lines and a sixth of its lines carry one (figure labels crowd some pages). Other pages
    come back unchanged.
    """
    numbered, n_lines = [], 0
    for b, block in enumerate(page):
        for i, line in enumerate(block):
            n_lines += 1
            if line[:1].isdigit() or line[:1] in " \t\u00b7":
                match = _LINE_NUMBER.match(line)
                if match:
                    numbered.append((b, i, int(match.group(1)), match.end()))
    if len(numbered) < 5:
        return page
    numbers = [number for _, _, number, _ in numbered]
    counted = [
        k for k, n in enumerate(numbers) if n + 1 in numbers[k + 1 : k + 4] or n - 1 in numbers[max(0, k - 3) : k]
    ]
    if len(counted) < 5 or len(counted) * 6 < n_lines:
        return page
    cut = {(numbered[k][0], numbered[k][1]): numbered[k][3] for k in counted}
    cleaned = []
    for b, block in enumerate(page):
        lines = (line[cut.get((b, i), 0) :] for i, line in enumerate(block))
        lines = (" ".join(_LEADERS.sub(" ", line).split()) if "\u00b7" in line else line.strip() for line in lines)
        cleaned.append([line for line in lines if line])
    return cleaned


_DIGIT_RUN = re.compile(r"\d+")


def _furniture_key(line: str) -> str:
    # Running headers often carry the page number ("Climate report - 3", "November 09, 2021 10 800.211.DEPO"):
    # compare them with every run of digits masked, so page 9 and page 10 give the same key.
    return _DIGIT_RUN.sub("#", line.strip().lower())


def drop_page_furniture(pages: list[Page], margins: list[set[int]] | None = None, edge_lines: int = 2) -> list[Page]:
    """Drop page numbers and lines that repeat near the top or bottom of most pages (more than half).

    Candidates are the first and last `edge_lines` lines of a page and every line of the blocks that
    `margins[p]` places in page p's top or bottom margin band (so a footer drawn in the middle of the content
    stream is found too), so a sentence that happens to repeat in the body is kept. A bare number ("7",
    "Page 7 of 9") is a page number when it counts with the pages: number minus page index is the same on a
    third of them (a table's first or last cell is not). A page never loses all its text: where the repeated
    lines are all there is (a short document whose pages repeat the same lines), only its page number goes.
    Blocks keep their places (emptied ones stay, as empty lists).
    """

    def candidates(p: int, page: Page) -> dict[tuple[int, int], str]:
        """Line positions (block, line) that may be furniture, with their text."""
        positions = [(b, i) for b, block in enumerate(page) for i in range(len(block))]
        chosen = positions[:edge_lines] + positions[-edge_lines:]
        if margins:
            chosen += [(b, i) for b, i in positions if b in margins[p]]
        return {(b, i): page[b][i] for b, i in chosen}

    found = [candidates(p, page) for p, page in enumerate(pages)]
    seen: dict[str, int] = {}
    for lines in found:
        for key in {_furniture_key(line) for line in lines.values()}:
            seen[key] = seen.get(key, 0) + 1
    threshold = max(2, len(pages) // 2 + 1)
    # A line of digits alone ("2010", "0.4") is not a header, whatever its key: page numbers are found below.
    repeated = {key for key, n in seen.items() if n >= threshold and any(c.isalpha() for c in key)}

    numbered = [
        {where: int(match.group(1)) for where, line in lines.items() if (match := _PAGE_NUMBER.fullmatch(line.strip()))}
        for lines in found
    ]
    offsets: dict[int, int] = {}
    for p, numbers in enumerate(numbered):
        for offset in {n - p for n in numbers.values()}:
            offsets[offset] = offsets.get(offset, 0) + 1
    needed = 1 if len(pages) == 1 else max(2, len(pages) // 3)
    counting = {offset for offset, n in offsets.items() if n >= needed}

    cleaned = []
    for p, (page, lines) in enumerate(zip(pages, found)):
        page_numbers = {where for where, n in numbered[p].items() if n - p in counting}
        drop = page_numbers | {where for where, line in lines.items() if _furniture_key(line) in repeated}
        text_left = any(
            line.strip() and (b, i) not in drop for b, block in enumerate(page) for i, line in enumerate(block)
        )
        if not text_left:
            drop = page_numbers
        touched = {b for b, _ in drop}
        cleaned.append(
            [
                [line for i, line in enumerate(block) if (b, i) not in drop] if b in touched else block
                for b, block in enumerate(page)
            ]
        )
    return cleaned


# --- 5-8: lines into paragraphs ------------------------------------------------------------------------------


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
        if not line or len(line) >= 0.8 * full_line or line.endswith((".", ",", ";", ":", "-")):
            break
        heading += 1
    return [block[:heading], block[heading:]] if heading else [block]


_SOFT_BREAK = re.compile("\u00ad[ \t]*\n")
_SPACED_BREAK = re.compile(r"-[ \t]+\n")


def join_hyphenated_words(text: str, document: str = "") -> str:
    """Join a word broken with a hyphen at a line end when the next line goes on in lower case.

    A soft hyphen at a line end is the typesetter's own break inside a word: always joined. A hyphen followed
    by spaces before the break ("unprece- \\ndented") is a hyphen at the line end like any other. The hyphen
    stays (only the line break goes) before a capital or after a number ("sub-Arctic", "100-year"), when the
    first half is a compound-forming word ("self-", "well-"), and when `document` (the whole text, lower case)
    writes the same compound with a hyphen within a line. Without a dictionary the rest is a guess that
    favours joining.
    """
    if "\u00ad" in text:
        text = _SOFT_BREAK.sub("", text)
    if "- " in text or "-\t" in text:
        text = _SPACED_BREAK.sub("-\n", text)
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


# --- 9: back matter ---------------------------------------------------------------------------------------------

_BACK_MATTER_TITLES = (
    r"references?(?: cited| and notes)?|bibliography|literature cited|works cited|notes and references|"
    r"acknowledge?ments?|author(?:s'|s)? contributions?|competing (?:financial )?interests?|"
    r"conflicts? of interests?(?: statement)?|declaration of competing interests?|"
    # not "Funding" or "Declarations" alone: policy documents have such sections of real text
    r"funding (?:information|statement|sources)|financial disclosure|"
    r"data (?:and code )?availability(?: statement)?|code availability|additional information|"
    r"supplementary (?:information|materials?)|ethics (?:declarations|statement)|rights and permissions|"
    r"reprints and permissions?|about this article|author information|publisher['\u2019]?s note|cite this article|"
    # the same in the corpus's other common languages (French, Spanish, German)
    r"r[e\u00e9]f[e\u00e9]rences|bibliographie|remerciements|referencias|bibliograf[i\u00ed]a|agradecimientos|"
    r"literatur(?:verzeichnis)?|danksagung"
)
# A heading alone on its paragraph, maybe numbered ("7 References", "VII. REFERENCES").
_BACK_MATTER_HEADING = re.compile(rf"(?:[0-9]+\.?|[IVX]+\.)?\s*(?:{_BACK_MATTER_TITLES})\s*:?", re.IGNORECASE)
# A heading run into its text ("Acknowledgements We thank ...", "Funding: ...").
_BACK_MATTER_RUN_IN = re.compile(
    r"(?:acknowledge?ments?|author(?:s'|s)? contributions?|competing (?:financial )?interests?|"
    r"conflicts? of interests?|data availability)\b\s*[:.]?\s+\S|"
    r"(?:funding|references)\s*:|references\s+(?:\[?\d|[A-Z][a-z]+,)",
    re.IGNORECASE,
)
# Licence and permission boilerplate, wherever the layout puts it (first-page sidebars, last-page boxes).
_BOILERPLATE = re.compile(
    r"open access\b.{0,60}(?:licen[cs]ed|distributed) under|this (?:article|work) is licen[cs]ed under|"
    r"distributed under the terms (?:and conditions )?of the creative commons|retain copyright and release|"
    r"reprints and permissions? information|publisher['\u2019]?s note|remains neutral with regard to jurisdictional|"
    r"correspondence and requests for materials|peer review information|\u00a9\s*the author\(s\)",
    re.IGNORECASE,
)
# Words one of which every boilerplate sentence above contains: a cheap test before the regex.
_BOILERPLATE_WORDS = (
    "licen",
    "distributed under",
    "copyright",
    "permission",
    "publisher",
    "correspondence",
    "peer review",
    "\u00a9",
)
_REFERENCE_LIKE = re.compile(r"\b(?:19|20)\d\d[a-z]?\b|\bdoi\b|\bet al\b|https?://", re.IGNORECASE)


def is_back_matter_heading(text: str) -> bool:
    """ "References", "Acknowledgements", "7 Competing interests", "Publisher's note" and the like."""
    return len(text) <= 60 and _BACK_MATTER_HEADING.fullmatch(text.strip()) is not None


def _is_heading(paragraph: str) -> bool:
    return (
        len(paragraph) <= 80
        and len(paragraph.split()) <= 10
        and (paragraph[:1].isupper() or paragraph[:1].isdigit())
        and not paragraph.endswith((".", ",", ";", ":"))
    )


def _is_boilerplate(head: str) -> bool:
    low = head.lower()
    return any(word in low for word in _BOILERPLATE_WORDS) and _BOILERPLATE.search(head) is not None


def drop_back_matter(paragraphs: list[str]) -> tuple[list[str], int]:
    """Drop what is not the article's text: reference lists, acknowledgements, author contributions, competing
    interests, funding and availability statements, licence and permission boilerplate. Returns the paragraphs
    kept and the characters dropped.

    A back-matter heading opens a section that runs to the next heading that is not back matter (so a Methods
    section printed after the references stays); a short unpunctuated reference ("IPCC (2021) Climate Change
    2021") does not count as a heading. Headings run into their text and boilerplate paragraphs go wherever
    they stand.
    """
    kept, dropped, in_back_matter = [], 0, False
    for paragraph in paragraphs:
        head = paragraph[:400]
        if is_back_matter_heading(paragraph):
            in_back_matter = True
        elif in_back_matter and _is_heading(paragraph) and not _REFERENCE_LIKE.search(paragraph):
            in_back_matter = False
        if in_back_matter or _BACK_MATTER_RUN_IN.match(head) or _is_boilerplate(head):
            dropped += len(paragraph)
        else:
            kept.append(paragraph)
    return kept, dropped


# --- all of them ------------------------------------------------------------------------------------------------


@dataclass
class Cleaned:
    paragraphs: list[str]
    page_chars: list[int]  # characters kept per page (before back matter is dropped)
    first_page: Page  # page 1's blocks after the line rules, in their original places (for the title)
    fired: list[str] = field(default_factory=list)  # names of the rules that changed something
    back_matter_chars: int = 0


def clean_pages(pages: list[Page], margins: list[set[int]] | None = None, keep_back_matter: bool = False) -> Cleaned:
    """All rules in order. `margins[p]`: indices of page p's blocks in its top or bottom margin band.

    Cleaning must stay cheap next to pymupdf's own extraction (benchmarks in climate_sft/benchmarks/extract.py):
    Unicode normalization runs once per document, and the per-block rules use str methods, not regex passes.
    """
    fired: dict[str, None] = {}  # an ordered set

    lines = "\n".join("\n".join("\n".join(block) for block in page) for page in pages)
    if not lines.isascii() or "[BB:" in lines:  # once per document, then cut back into the same lines
        normalized = drop_layout_debris(normalize_unicode(lines))
        for rule, changed in (("normalize_unicode", not lines.isascii()), ("drop_layout_debris", "[BB:" in lines)):
            if changed:
                fired[rule] = None
        lines, rows = normalized, iter(normalized.split("\n"))
        pages = [[[next(rows) for _ in block] for block in page] for page in pages]

    numbered = [drop_line_numbers(page) for page in pages]
    if any(new is not old for new, old in zip(numbered, pages)):
        fired["drop_line_numbers"] = None
    cleaned = drop_page_furniture(numbered, margins)
    if cleaned != numbered:
        fired["drop_page_furniture"] = None

    document = lines.lower()
    paragraphs, page_chars = [], []
    for page in cleaned:
        page_paragraphs = []
        for block in page:
            if not block:
                continue
            parts = split_heading(block)
            if len(parts) > 1:
                fired["split_heading"] = None
            for part in parts:
                text = "\n".join(part)
                joined = join_hyphenated_words(text, document)
                if joined is not text and joined != text:
                    fired["join_hyphenated_words"] = None
                page_paragraphs += [p for p in join_wrapped_lines(joined).split("\n\n") if p]
        page_chars.append(sum(map(len, page_paragraphs)))
        paragraphs += page_paragraphs
    whole = join_split_paragraphs(paragraphs)
    if len(whole) < len(paragraphs):
        fired["join_split_paragraphs"] = None
    dropped = 0
    if not keep_back_matter:
        whole, dropped = drop_back_matter(whole)
        if dropped:
            fired["drop_back_matter"] = None
    return Cleaned(whole, page_chars, cleaned[0] if cleaned else [], list(fired), dropped)


# --- measures ---------------------------------------------------------------------------------------------------


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's main language ("en", "fr", ...), "" when it cannot tell.

    CLD2 (pycld2): offline, no model to load, under 0.1 ms for the 2,000 characters read from the middle of
    the document (the front matter is often in two languages); it says "unknown" for junk instead of guessing.
    """
    import pycld2

    middle = len(text) // 2
    sample = text[max(0, middle - 1000) : middle + 1000]
    try:
        _, _, details = pycld2.detect(sample)
    except pycld2.error:  # invalid UTF-8 after all (surrogates from a broken font map)
        return ""
    code = details[0][1]
    return "" if code == "un" else code


# Punctuation inside and around words goes before the test, so "decades." and "well-known" count as words.
_PUNCTUATION = str.maketrans("", "", "\"'()[]{}.,;:!?*-\u2013\u2014\u2018\u2019\u201c\u201d\u2022")


def text_quality(text: str) -> tuple[float, float]:
    """(share of words that are alphabetic, share of lines that are not prose). A prose line (paragraph) has
    at least five words, most of them alphabetic; headings, captions, table rows and slide bullets are not."""
    lines = text.split("\n\n")
    alphabetic = words = non_prose = 0
    for line in lines:
        tokens = line.translate(_PUNCTUATION).split()
        letters = sum(map(str.isalpha, tokens))
        alphabetic += letters
        words += len(tokens)
        non_prose += len(tokens) < 5 or letters * 2 < len(tokens)
    return (alphabetic / words if words else 0.0), (non_prose / len(lines) if text else 1.0)


# --- titles -----------------------------------------------------------------------------------------------------

_FILE_NAME = re.compile(
    r"\.(?:docx?|pdf|indd|pptx?|xlsx?|rtf|odt|odp|tex|dvi|qxd|qxp|p65|pmd|wpd|txt|eps|ai|psd)\b", re.IGNORECASE
)
_APPLICATION = re.compile(
    r"^(?:microsoft (?:word|powerpoint|excel)|powerpoint presentation|untitled|adobe|acrobat|libreoffice|"
    r"openoffice|print|slide \d|document\d*$|title$)",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"^(?:https?://|www\.)|\S+@\S+\.\w+|^\S+\.(?:com|org|net|gov|edu|int)(?:/\S*)?$", re.IGNORECASE)


def is_title_like(text: str) -> bool:
    """A title has two to forty words, mostly letters, and is not a file name ("..._FR_06.indd"), an
    application's name ("Microsoft Word - Rules 2010", "PowerPoint Presentation"), a web address or a
    placeholder ("DATE", "Untitled")."""
    words = text.split()
    if not 2 <= len(words) <= 40 or len(text) > 300:
        return False
    letters = sum(c.isalpha() for c in text)
    return letters * 2 > len(text) - text.count(" ") and not (
        _FILE_NAME.search(text) or _APPLICATION.search(text) or _ADDRESS.search(text)
    )
