"""The extraction-quality benchmark's own parts: its scores, its cases, its reference text from JATS."""

from __future__ import annotations

from helpers import prose_pages, write_pdf

from benchmarks.extraction_cases import CASES, write_cases
from benchmarks.extraction_quality import cases, score
from benchmarks.real_articles import jats_reference


def test_score_counts_recall_noise_order_and_broken_words():
    reference = "Sea level rises as the important glaciers melt"
    assert score(reference, reference) == {
        "words": 8,
        "reference_words": 8,
        "recall": 1.0,
        "noise": 0.0,
        "order": 1.0,
        "broken_words": 0,
    }
    extracted = "Page 3 Sea level rises as the impor tant glaciers melt"
    got = score(extracted, reference)
    assert got["recall"] == 0.875 and got["noise"] == round(4 / 11, 4) and got["broken_words"] == 1
    shuffled = score("glaciers melt Sea level rises as the important", reference)
    assert shuffled["recall"] == 1.0 and shuffled["noise"] == 0.0 and shuffled["order"] < 0.8  # order, not words


def test_generated_cases_are_deterministic(tmp_path):
    written = write_cases(tmp_path)
    assert [p.name for p in written] == [f"{name}.pdf" for name in CASES]
    assert all(p.with_suffix(".txt").read_text().strip() for p in written)
    for name in ("slides", "hyphenation", "scan"):
        assert CASES[name]()[0] == (tmp_path / f"{name}.pdf").read_bytes()


def test_real_folder_pairs_pdfs_with_their_reference_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("benchmarks.extraction_quality.write_cases", lambda folder: [])
    real = tmp_path / "real"
    real.mkdir()
    write_pdf(real / "paper.pdf", prose_pages(1))
    (real / "paper.txt").write_text("The ocean has absorbed more than ninety percent of the excess heat.")
    write_pdf(real / "orphan.pdf", prose_pages(1))
    found = [(layout, pdf.name) for layout, pdf, _ in cases(tmp_path / "generated", real)]
    assert found == [("real article", "paper.pdf")]
    assert "orphan.pdf: no orphan.txt beside it, left out" in capsys.readouterr().out


JATS = b"""<?xml version="1.0" encoding="utf-8"?>
<article xmlns:mml="http://www.w3.org/1998/Math/MathML"><front><article-meta>
<title-group><article-title>Baseflow recession</article-title></title-group>
<contrib-group><contrib><name><surname>Cooper</surname></name></contrib></contrib-group>
</article-meta></front>
<body><sec><title>Summary</title><p>Streams recede <xref ref-type="bibr">(Brutsaert, 2008)</xref> after
rain, as <inline-formula><tex-math>\\frac{dQ}{dt}</tex-math></inline-formula> shows.</p>
<fig><caption><p>Recession curves.</p></caption></fig></sec>
<sec><title>Acknowledgements</title><p>We thank the gauges.</p></sec></body>
<back><ref-list><ref><mixed-citation>Brutsaert, W. (2008).</mixed-citation></ref></ref-list></back></article>"""


def test_jats_reference_keeps_the_article_text_only():
    assert jats_reference(JATS).split("\n\n") == [
        "Baseflow recession",
        "Summary",
        "Streams recede (Brutsaert, 2008) after rain, as shows.",
        "Recession curves.",
    ]
