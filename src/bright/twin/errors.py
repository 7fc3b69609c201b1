"""NGSI-LD error types (ETSI GS CIM 009, clause 5.5.2) as exceptions carrying their ProblemDetails.

Every layer raises these; the API renders them as ``application/problem+json`` (or ``json``)
with the spec's ``type`` URI, an HTTP status, a title and a ``detail`` naming what was wrong.
"""

from __future__ import annotations

from typing import Any

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(Exception):
    """Base of the NGSI-LD errors: ``kind`` is the last segment of the spec's error type URI."""

    kind = "InternalError"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return ERROR_BASE + self.kind

    def problem(self) -> dict[str, Any]:
        """The ProblemDetails body (RFC 9457 with the NGSI-LD type)."""
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status}
        body["detail"] = self.detail
        body.update(self.extra)
        return body


class InvalidRequest(NgsiLdError):
    kind, status, title = "InvalidRequest", 400, "The request is not well-formed"


class BadRequestData(NgsiLdError):
    kind, status, title = (
        "BadRequestData",
        400,
        "The request includes input data that does not meet the requirements",
    )


class AlreadyExists(NgsiLdError):
    kind, status, title = "AlreadyExists", 409, "The referred element already exists"


class OperationNotSupported(NgsiLdError):
    kind, status, title = "OperationNotSupported", 422, "The operation is not supported"


class ResourceNotFound(NgsiLdError):
    kind, status, title = "ResourceNotFound", 404, "The referred resource has not been found"


class InternalError(NgsiLdError):
    kind, status, title = "InternalError", 500, "There has been an error during the operation execution"


class TooComplexQuery(NgsiLdError):
    kind, status, title = "TooComplexQuery", 403, "The query is too complex"


class TooManyResults(NgsiLdError):
    kind, status, title = "TooManyResults", 403, "The query results in too many entities"


class LdContextNotAvailable(NgsiLdError):
    kind, status, title = "LdContextNotAvailable", 503, "The @context could not be retrieved"


class NotAcceptable(NgsiLdError):
    kind, status, title = "NotAcceptable", 406, "The requested media type is not acceptable"

    @property
    def type_uri(self) -> str:
        return ERROR_BASE + "NotAcceptable"


class UnsupportedMediaType(NgsiLdError):
    kind, status, title = "UnsupportedMediaType", 415, "The request media type is not supported"


class PayloadTooLarge(NgsiLdError):
    kind, status, title = "BadRequestData", 413, "The request body is too large"


class Forbidden(NgsiLdError):
    kind, status, title = "Forbidden", 403, "The request is not allowed by the node's policies"


class Unauthorized(NgsiLdError):
    kind, status, title = "Unauthorized", 401, "Authentication is required"
