"""Small embedded sample corpus of climate PDFs generated from original text (see README.md)."""
