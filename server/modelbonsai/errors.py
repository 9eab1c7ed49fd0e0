"""The one error hierarchy of the engine: which failures the user can fix, and their JSON-RPC code.

Every user-facing error of the engine derives from `BonsaiError`; like pygls's exception classes,
the class says the code, so the faces map an error by its class, never by its text: the language
server answers with `code` (lsp/server.py `request_error`), the worker sends a user error without
its traceback, the CLI prints it as one line (exit code 2) and the runner records its message.

Imports nothing from `lsp` or `cli` (and no torch): the engine raises these, the faces map them.
Bonsai's JSON-RPC codes are declared here, once: lsp/protocol.py re-exports them beside LSP's own,
and the extension's protocol test reads them from this file.
"""

from __future__ import annotations

__all__ = [
    "EXPORT_EXISTS",
    "INTERNAL_ERROR",
    "JOB_FAILED",
    "NOT_FOUND",
    "USER_ERROR",
    "BonsaiError",
    "JobFailedError",
    "NotFoundError",
    "UserError",
    "error_code",
    "is_user_error",
]

INTERNAL_ERROR = -32603
NOT_FOUND = -32002  # unknown model, job, result, tensor or file
USER_ERROR = -32003  # something the user can fix (bad experiment file, op parameter, path)
JOB_FAILED = -32004  # the job behind the request could not compute what was asked; message says why
EXPORT_EXISTS = -32005  # an export would replace files in a non-empty folder


class BonsaiError(Exception):
    """An error of Bonsai's own. `code`: its JSON-RPC error code; `user`: whether the user can fix
    it (its message says how; no traceback is shown). Subclasses set both as class attributes."""

    code: int = INTERNAL_ERROR
    user: bool = False


class UserError(BonsaiError):
    """A mistake the user can fix: a bad experiment file, op parameter, path or option."""

    code = USER_ERROR
    user = True


class NotFoundError(UserError):
    """Something named by the user does not exist: a model, a result, a file."""

    code = NOT_FOUND


class JobFailedError(UserError):
    """A job could not compute what was asked of it (no tensor of that name, out of memory)."""

    code = JOB_FAILED


def is_user_error(e: BaseException) -> bool:
    """Whether `e` is a problem the user can fix, to be shown as its message without traceback.

    Besides Bonsai's own errors, a ValueError or FileNotFoundError with a message counts: the
    libraries the engine calls (safetensors, tokenizers, json) raise those for bad user input."""
    if isinstance(e, BonsaiError):
        return e.user
    return isinstance(e, (ValueError, FileNotFoundError)) and bool(str(e).strip())


def error_code(e: BaseException) -> int | None:
    """The JSON-RPC code of a Bonsai error; None for any other exception (its face decides)."""
    return e.code if isinstance(e, BonsaiError) else None
