"""The error hierarchy every layer raises and the CLI turns into one line on stderr.

Each class carries the process exit code documented in the README, so the CLI
never has to guess: a ``KodevError`` escaping a command becomes
``kodev: <message>`` plus an optional hint, and ``exit_code``.
"""

from __future__ import annotations


class KodevError(Exception):
    """Base class of every error kodev reports to the user (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(KodevError):
    """Wrong flags, arguments or environment (exit code 2)."""

    exit_code = 2


class ConfigError(KodevError):
    """An invalid ``.ko.yaml`` or configuration value (exit code 2)."""

    exit_code = 2


class BuildError(KodevError):
    """``go build`` or ``go list`` failed; ``output`` is the compiler's text (exit code 3)."""

    exit_code = 3

    def __init__(self, message: str, *, output: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.output = output


class RegistryError(KodevError):
    """The registry refused, failed or could not be reached (exit code 4)."""

    exit_code = 4


class KubeError(KodevError):
    """The Kubernetes API refused, failed or could not be reached (exit code 5)."""

    exit_code = 5
