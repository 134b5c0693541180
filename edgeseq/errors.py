"""Errors a user can act on. Each message is one line that names the problem and the thing at fault.

The CLI prints ``error: <message>`` for any :class:`EdgeseqError` and exits with the error's code;
anything else is a bug and keeps its traceback. The exit codes every command shares:

====  ==========================================================================================
0     everything asked for was measured (or made) and passed
1     it was measured, and something failed: an artifact below its thresholds, a conversion that
      failed, a bench row that could not be measured, a regression in ``bench --compare``
2     an invalid option value or usage (Click's convention; :class:`InvalidValueError`)
3     an optional package is missing (:class:`MissingDependencyError`)
4     bad input: a file, folder, document, data set or output location that is missing, corrupt,
      malformed, tampered with or not writable (:class:`InputError` and its kinds)
130   interrupted (Ctrl-C); what was complete before is kept
====  ==========================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # measured, something failed
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_BAD_INPUT = 4
EXIT_INTERRUPTED = 130


class EdgeseqError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""

    exit_code = EXIT_FAILED


class InputError(EdgeseqError):
    """Bad input of any kind: the thing named cannot be used as it is."""

    exit_code = EXIT_BAD_INPUT


class DataError(InputError):
    """A data file or directory is missing, truncated, corrupt or inconsistent."""


class ModelError(InputError):
    """A model file cannot be read, or its shapes do not fit what is asked of it."""


class DocumentError(InputError):
    """A JSON document edgeseq reads (card, manifest, report) is unreadable, foreign or malformed."""


class IntegrityError(InputError):
    """A bundle's file differs from what its manifest recorded, or lies outside the bundle."""


class OutputError(InputError):
    """An output location cannot be written (read-only, full, a file where a folder is needed)."""


class MissingDependencyError(EdgeseqError):
    """An optional package is needed for this operation and is not installed."""

    exit_code = EXIT_MISSING_DEPENDENCY


class InvalidValueError(EdgeseqError, ValueError):
    """A setting outside its valid range (a negative learning rate, zero epochs, NaN, ...)."""

    exit_code = EXIT_USAGE


class UnknownChoiceError(InvalidValueError):
    """A name (zoo model, format, ...) that is not one of the valid choices."""

    def __init__(self, what: str, value: object, valid: list[str]):
        super().__init__(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        self.valid = valid
