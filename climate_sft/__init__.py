"""climate-sft: fine-tune causal LMs on text extracted from climate PDFs, and measure what it cost and gained."""

import contextlib
import logging
import sys

# bitsandbytes tries a hub kernel for CPUs with AVX512-BF16 and warns at import when none can be fetched;
# its built-in CPU kernel is used instead, so the warning says nothing the user can act on.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input the user can fix (a recipe key, a missing folder): one line per problem, exit status 2."""


@contextlib.contextmanager
def exit_on_user_error(prog: str):
    """Every entry point's ending for bad input: each problem on one stderr line, exit status 2, no traceback."""
    try:
        yield
    except UserError as error:
        for line in str(error).splitlines():
            print(f"{prog}: error: {line}", file=sys.stderr)
        sys.exit(2)
