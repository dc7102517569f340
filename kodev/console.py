"""Whether to colour terminal output, and whether it can redraw in place: the one rule
every command follows."""

from __future__ import annotations

import os
from typing import TextIO


def wants_color(choice: str, stream: TextIO) -> bool:
    """``--color``: auto means a terminal, without NO_COLOR and not TERM=dumb."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    return is_live_terminal(stream)


def is_live_terminal(stream: TextIO) -> bool:
    """A terminal that can redraw in place (spinners, live views): a TTY whose TERM is not
    dumb, or FORCE_COLOR. NO_COLOR removes colours, not progress (rich honours it)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty() and os.environ.get("TERM") != "dumb"
