"""Errors a user can act on. Each message is one line that names the problem and the thing at fault.

The CLI prints ``error: <message>`` for any :class:`EdgeseqError` and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class EdgeseqError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""

    exit_code = 1


class DataError(EdgeseqError):
    """A data file or directory is missing, truncated, corrupt or inconsistent."""


class ModelError(EdgeseqError):
    """A model file cannot be read, or its shapes do not fit what is asked of it."""


class MissingDependencyError(EdgeseqError):
    """An optional package is needed for this operation and is not installed."""

    exit_code = 3


class InvalidValueError(EdgeseqError, ValueError):
    """A setting outside its valid range (a negative learning rate, zero epochs, ...)."""


class UnknownChoiceError(EdgeseqError, ValueError):
    """A name (zoo model, format, ...) that is not one of the valid choices."""

    def __init__(self, what: str, value: object, valid: list[str]):
        super().__init__(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        self.valid = valid
