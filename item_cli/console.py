"""Where a command's output goes: results on stdout, everything else (logs, progress, warnings) on stderr.

`item train ... | jq` must see only the result, whatever the libraries underneath print, so `item_cli.cli`
points `results` at the real stdout and sends the process's stdout to stderr while a command runs.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping

_results = sys.stdout


def emit(text: str) -> None:
    """Write one result (a line, a JSON object, a table) to the command's real standard output."""
    _results.write(text + "\n")
    _results.flush()


def status(text: str) -> None:
    """A line for the person watching (what was written where), on stderr: never mixed with the results."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def set_results_stream(stream) -> None:
    global _results
    _results = stream


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def configure_logging(verbose: bool = False) -> None:
    """item_cli's log messages on stderr as `warning: ...` lines (INFO too with `verbose`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("item_cli")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def report_skipped(skipped) -> None:
    """One `warning: skipped PATH: reason` line on stderr for each input that gave no result."""
    from .data.files import display_path

    log = logging.getLogger("item_cli")
    for item in skipped:
        log.warning("skipped %s: %s", display_path(item.path), item.reason)


def json_ready(value):
    """JSON-friendly values: NaN becomes null, numpy scalars Python numbers, tuples lists, keys strings."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy scalar
        return json_ready(value.item())
    return value
