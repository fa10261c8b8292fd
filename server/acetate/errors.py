"""Errors shared by the engine, the CLI and the server.

`InputError` is what a user can fix (bad field, missing file): HTTP 4xx, one CLI line.
Everything else is a bug or an environment failure: HTTP 5xx for that job only.
"""

from __future__ import annotations

from contextlib import suppress


class AcetateError(Exception):
    """Base class: carries a stable machine-readable `code`."""

    code = "internal_error"
    #: The request field the error is about, when one is known.
    field: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InputError(AcetateError, ValueError):
    """A request value is wrong; `field` names it (a request field or CLI flag's field)."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class ModelNotFoundError(InputError):
    """A model or layer file the request needs is not present; the message says what to get."""

    code = "model_not_found"


class ModelFileError(InputError):
    """A weight file is damaged, unknown, ambiguous, unsafe (pickle) or incompatible."""

    code = "bad_model_file"


class MissingWeightFile(ModelNotFoundError, ModelFileError):
    """A weight file path that does not exist (both "not found" and "bad file" for callers)."""

    code = "model_not_found"


class GenerationCancelled(AcetateError):
    """Raised from inside the denoising loop when the job was cancelled."""

    code = "cancelled"


class OutOfMemory(AcetateError):
    """The device ran out of memory; the job fails, the server frees memory and carries on."""

    code = "out_of_memory"


def error_field(error: BaseException) -> str | None:
    """The request field an error was tagged with (`tag_field`), or None."""
    field = getattr(error, "field", None)
    return field if isinstance(field, str) else None


def tag_field(error: BaseException, field: str) -> None:
    """Say which request field (e.g. `objects[2]`) an error happened at, unless it already
    names one: a mode that runs a list item by item tags a failure with the item."""
    if error_field(error) is None:
        # an exception type with __slots__ cannot be tagged: it stays untagged
        with suppress(AttributeError):
            error.field = field  # type: ignore[attr-defined]
