"""Whether to colour terminal output: the one rule every command follows."""

from __future__ import annotations

import os
from typing import TextIO


def wants_color(choice: str, stream: TextIO) -> bool:
    """``--color``: auto means a terminal, without NO_COLOR and not TERM=dumb."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty() and os.environ.get("TERM") != "dumb"
