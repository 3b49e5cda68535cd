"""The serving layer's own failures, each mapped to one HTTP status by the app.

They extend ServeError so the CLI prints them as one line, like every other SealkitError.
"""

from __future__ import annotations

from sealkit.errors import ServeError


class BadRequestError(ServeError):
    """A request is malformed: bad JSON, bad base64, an empty list, a bad field (HTTP 400)."""

    status = 400


class TaskNotFoundError(ServeError):
    """No task of that name is loaded (HTTP 404)."""

    status = 404


class TooLargeError(ServeError):
    """A request body, item count or index is over the server's limits (HTTP 413)."""

    status = 413


class QueueFullError(ServeError):
    """The backbone queue is full; the client should retry later (HTTP 503)."""

    status = 503


class UnauthorizedError(ServeError):
    """An admin call without the admin token the server was started with (HTTP 401)."""

    status = 401


class ConflictError(ServeError):
    """The request conflicts with the server's state, e.g. retrieving from an empty index (HTTP 409)."""

    status = 409


class UnsupportedMediaError(ServeError):
    """A body that is neither JSON nor multipart form data (HTTP 415)."""

    status = 415


class ForbiddenError(ServeError):
    """An admin call to a server whose admin API is disabled (no token configured) (HTTP 403)."""

    status = 403
