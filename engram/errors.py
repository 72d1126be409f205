"""User-facing errors.

Everything a user can fix (a bad argument, a malformed file, a mismatched model) is raised as an
:class:`EngramError`. The command line prints it as one line and exits with status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class EngramError(Exception):
    """An error caused by the user's input, rendered as ``FILE:LINE: FIELD: message``."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        if self.field is not None:
            where += f"{self.field}: "
        # One line, always: a multi-line message would break the "one clear line" promise.
        return (where + self.message).replace("\n", " ")


class FormatError(EngramError):
    """A file that does not follow its declared format or schema."""


class MismatchError(EngramError):
    """Files that are each valid but do not belong together (other model, other exit points...)."""


def from_validation_error(exc, path=None) -> FormatError:  # noqa: ANN001
    """The first problem of a pydantic ``ValidationError`` as a FormatError naming the file and the field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    return FormatError(first.get("msg", "invalid").removeprefix("Value error, "), path=path, field=field)
