"""Structured logs: a readable message, a stable `action` key and bound ids; JSON off a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure(
    fmt: Literal["auto", "json", "console"] = "auto", *, level: int = logging.INFO
) -> None:
    """Set up structlog once, at the edge (CLI or app factory)."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
