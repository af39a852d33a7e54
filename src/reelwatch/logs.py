"""Structured logs: a readable message, a stable `action` key and bound ids; JSON off a TTY.

Text from outside (prompts, the provider's error messages and status words, ids) can carry
CR/LF, ANSI escapes and other control characters. Before anything reaches a terminal, as a
console log line or as CLI output, `printable` makes them visible escapes, so such text can
neither forge a log line nor drive the terminal. JSON logs and `--json` output keep the text
exact (JSON escapes it).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Literal

import structlog

# Hand-written because no library does just this: str.isprintable() would also escape the
# format characters that emoji and many scripts need (ZERO WIDTH JOINER, ...), and Rich strips
# only a few C0 codes. Escaped: C0 and C1 controls, DEL, the line and paragraph separators
# (some viewers break lines there), the bidirectional overrides and isolates (they reorder what
# a reader sees: "Trojan Source"), and lone surrogates (a terminal cannot encode them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters as visible escapes (`\\x1b`, `\\r\\n`)."""
    return _UNSAFE.sub(_escape, text)


def _printable_block(text: str) -> str:
    """A multi-line block (a traceback) keeps its lines, each escaped and indented, so no line
    of it can pass for a log record of its own."""
    return "\n".join("  " + printable(line) for line in text.split("\n"))


def printable_fields(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """structlog processor for the console renderer: every text value made `printable`.

    (Other values are rendered with repr(), which already escapes control characters.)
    """
    for key, value in event_dict.items():
        if isinstance(value, str):
            block = key in ("exception", "stack")
            event_dict[key] = _printable_block(value) if block else printable(value)
    return event_dict


def configure(
    fmt: Literal["auto", "json", "console"] = "auto", *, level: int = logging.INFO
) -> None:
    """Set up structlog once, at the edge (CLI or app factory)."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: list[structlog.typing.Processor] = (
        [structlog.processors.JSONRenderer()]
        if json_lines
        else [printable_fields, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
