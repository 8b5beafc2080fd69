"""One error root for the engine: a refusal with a translatable message id.

Callers (the CLI, the handlers' dispatcher) catch :class:`PolycrowdError` and turn
``msgid % params`` into one translated line; the subclasses say what kind of refusal it is.
``EngineError`` is the historical name of the root and stays an alias.
"""

from __future__ import annotations

from typing import Any


class PolycrowdError(Exception):
    """A request the engine refuses; ``msgid`` is a translatable reason for the user."""

    def __init__(self, msgid: str, **params: Any) -> None:
        super().__init__(msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params


class NotFound(PolycrowdError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class Forbidden(PolycrowdError):
    """The caller's role or ownership does not allow the request."""


class Conflict(PolycrowdError):
    """The request does not fit the current state (expired, finished, already done)."""


class InvalidInput(PolycrowdError):
    """The request itself is malformed or incomplete."""


EngineError = PolycrowdError

__all__ = ["Conflict", "EngineError", "Forbidden", "InvalidInput", "NotFound", "PolycrowdError"]
