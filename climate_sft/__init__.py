"""climate-sft: fine-tune causal LMs on text extracted from climate PDFs, and measure what it cost and gained."""

import logging

# bitsandbytes tries a hub kernel for CPUs with AVX512-BF16 and warns at import when none can be fetched;
# its built-in CPU kernel is used instead, so the warning says nothing the user can act on.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input the user can fix (a recipe key, a missing folder): shown as one line, exit status 2."""
