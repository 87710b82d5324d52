"""Prepare the real half of the extraction-quality benchmark: open-access articles whose full text is
published beside the PDF as JATS XML -> a folder of NAME.pdf + NAME.txt (reference text).

    python -m benchmarks.real_articles OUT_DIR [--clones DIR]
    make bench-extract-quality REAL_DIR=OUT_DIR

The articles are papers of the Journal of Open Source Software on climate, hydrology, hazards and energy
software (CC BY 4.0), as their authors committed them to their software's repository: the journal's draft
PDF (line-numbered, with the journal's sidebar, running footer and reference list) beside the JATS XML that
the same build wrote. Nothing is redistributed here: each repository is cloned from GitHub (blobs on
demand) into `--clones` (default OUT_DIR/.clones), or read from a clone already there, at the pinned commit.

The reference text is the article's text: title, abstract and body (headings, paragraphs, lists, figure and
table captions, table cells, code), without the body sections that climate-sft counts as back matter
(acknowledgements, author contributions, ...), without the reference list, author and affiliation lines or
journal metadata, and without LaTeX sources of formulas (the PDF shows them rendered).
"""

from __future__ import annotations

import argparse
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from climate_sft.text_rules import collapse_whitespace, is_back_matter_heading

# (name, GitHub repository, commit where the PDF and the JATS were committed together, PDF path, JATS path)
ARTICLES = [
    (
        "tomrap",
        "BritishGeologicalSurvey/TOMRAP",
        "988e0948a85fe327887fb00c5c04adda3c95da74",
        "paper/paper.pdf",
        "paper/paper.jats",
    ),
    (
        "geslar",
        "EireExtremes/geslaR",
        "38cd74ba7fb922c85545bbdcf66e243456f4ea33",
        "paper/paper.pdf",
        "paper/paper.jats",
    ),
    (
        "ethos_penalps",
        "FZJ-IEK3-VSA/ETHOS_PeNALPS",
        "3bcc2021fbd232d1f099e482d857e6bb82ae38d0",
        "paper/paper.pdf",
        "paper/paper.jats",
    ),
    ("linopy", "PyPSA/linopy", "7e8cd0c2df5ff846b80e48afa2139abed33f79e2", "paper/paper.pdf", "paper/paper.jats"),
    (
        "servir_aces",
        "SERVIR/servir-aces",
        "e9af0aac66148d81dc6ebd604b78cc446e089d9d",
        "paper/paper.pdf",
        "paper/paper.jats",
    ),
    (
        "separate",
        "WatershedsWildfireResearchCollaborative/SEPARATE",
        "8d667ace7e38dd174343542f09fd6bc9453f8a9c",
        "paper/paper.pdf",
        "paper/jats/paper.jats",
    ),
    (
        "pedon",
        "martinvonk/pedon",
        "3128f5ad117d52dcc5a7a06e3f8a0c74ae49f231",
        "paper/paper.pdf",
        "paper/jats/paper.jats",
    ),
    (
        "baseflow",
        "mgcooper/baseflow",
        "5dd267949647f59c4192e94c7b9b7c9340740049",
        "paper/paper.pdf",
        "paper/paper.jats",
    ),
    (
        "fsml",
        "sebastian-mutz/fsml",
        "398b68206732fddc8f61c68ad978c3c57d0b49fd",
        "paper/paper.pdf",
        "paper/jats/paper.jats",
    ),
    (
        "solar_data_tools",
        "slacgismo/solar-data-tools",
        "466430e2c4a500e39db256c938346ea219a5c9eb",
        "paper/paper.pdf",
        "paper/jats/paper.jats",
    ),
    ("tribs", "tribshms/tRIBS", "1aea20d570b81624d001c3d1dd87af37477a6804", "paper/paper.pdf", "paper/paper.jats"),
]

# Elements whose text is one paragraph of the reference; elements left out with everything inside them.
_BLOCKS = {"article-title", "title", "p", "td", "th", "preformat", "code", "label"}
_LEFT_OUT = {"tex-math", "ref-list", "ack", "fn-group", "contrib-group", "aff", "object-id"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element) -> str:
    """All text inside an element, in order, without left-out children (their tails stay)."""
    parts = [element.text or ""]
    for child in element:
        if _local(child.tag) not in _LEFT_OUT:
            parts.append(_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _paragraphs(element: ET.Element) -> list[str]:
    tag = _local(element.tag)
    if tag in _LEFT_OUT:
        return []
    if tag == "sec":
        title = element.find("title")
        if title is not None and is_back_matter_heading(collapse_whitespace(_text(title))):
            return []
    if tag in _BLOCKS:
        return [collapse_whitespace(_text(element))]
    return [p for child in element for p in _paragraphs(child)]


def jats_reference(xml: bytes) -> str:
    """Title, abstract and body of a JATS article as paragraphs (see the module docstring for what is left out)."""
    root = ET.fromstring(xml)
    meta = root.find("front/article-meta")
    parts = []
    if meta is not None:
        for element in (meta.find("title-group/article-title"), meta.find("abstract")):
            if element is not None:
                parts += _paragraphs(element)
    body = root.find("body")
    if body is not None:
        parts += _paragraphs(body)
    return "\n\n".join(p for p in parts if p)


def _git_show(clone: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(clone), "show", f"{commit}:{path}"], check=True, capture_output=True).stdout


def prepare(out_dir: Path, clones: Path) -> list[Path]:
    """Write OUT/NAME.pdf and OUT/NAME.txt for every article; returns the PDFs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, repo, commit, pdf_path, jats_path in ARTICLES:
        clone = clones / repo
        if not clone.exists():
            url = f"https://github.com/{repo}.git"
            subprocess.run(
                ["git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", url, str(clone)], check=True
            )

        (out_dir / f"{name}.pdf").write_bytes(_git_show(clone, commit, pdf_path))
        jats = _git_show(clone, commit, jats_path)
        (out_dir / f"{name}.txt").write_text(jats_reference(jats) + "\n", encoding="utf-8")
        written.append(out_dir / f"{name}.pdf")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--clones", type=Path, help="where the repositories are cloned (default OUT_DIR/.clones)")
    args = parser.parse_args()
    for path in prepare(args.out_dir, args.clones or args.out_dir / ".clones"):
        print(path)


if __name__ == "__main__":
    main()
