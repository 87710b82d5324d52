"""climate-sft: fine-tune causal LMs on text extracted from climate PDFs, and measure what it cost and gained."""

import contextlib
import logging
import os
import sys
import traceback

# bitsandbytes tries a hub kernel for CPUs with AVX512-BF16 and warns at import when none can be fetched;
# its built-in CPU kernel is used instead, so the warning says nothing the user can act on.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"

# `--debug` on any command line, or this variable set to 1, shows the traceback the boundary would hide.
DEBUG_VARIABLE = "CLIMATE_SFT_DEBUG"


class UserError(Exception):
    """Bad input the user can fix (a recipe key, a missing folder): one line per problem, exit status 2."""


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _bad_input(error: BaseException) -> str | None:
    """The one line for an exception that means bad input, or None for an internal fault. The one place that maps
    library exceptions to bad input: a path that cannot be read or written, a file that is not UTF-8 text."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}; check the path and its permissions"
    if isinstance(error, ModuleNotFoundError) and not (error.name or "").startswith("climate_sft"):
        # an optional package the input asks for (deepspeed, a tracker); a broken import of ours stays internal
        return f"a package this needs is not installed ({error}); install it, or change the setting that needs it"
    if isinstance(error, UnicodeDecodeError):
        return f"a file given is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@contextlib.contextmanager
def error_boundary(prog: str):
    """Every entry point's net: whatever escapes becomes one stderr line per problem, `PROG: error: ...`, with exit
    status 2 for bad input, 130 for Ctrl-C and 1 for an internal fault; the traceback only when debugging."""
    try:
        yield
    except SystemExit:
        raise
    except KeyboardInterrupt:  # on a line of its own: Ctrl-C often lands in the middle of a progress bar
        print(f"\n{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BaseException as error:  # the net under every specific message
        if debugging():
            traceback.print_exc()
        message = _bad_input(error)
        if message is not None:
            for line in message.splitlines():
                print(f"{prog}: error: {line}", file=sys.stderr)
            sys.exit(2)
        hint = "" if debugging() else f"; rerun with {DEBUG_VARIABLE}=1 (or --debug) for the traceback"
        print(f"{prog}: internal error: {_first_line(error)}{hint}", file=sys.stderr)
        sys.exit(1)


def take_debug_flag(argv: list[str]) -> list[str]:
    """`climate-sft --debug CMD ...` turns debugging on for this process and the ones it starts. Only before the
    command: after it, `--debug` is TrainingArguments' own recipe key."""
    if argv[:1] == ["--debug"]:
        os.environ[DEBUG_VARIABLE] = "1"
        return argv[1:]
    return argv
