"""Errors as RFC 9457 problem documents (``application/problem+json``), translated in one place."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetpulse.common.db import describe, is_transient
from fleetpulse.common.errors import ConcurrencyError, DataRejectedError, ExternalError
from fleetpulse.provision_api.auth import AuthenticationError
from fleetpulse.provision_api.credentials import CredentialsUnavailableError
from fleetpulse.provision_api.domain import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    StaleVersionError,
    UnauthenticatedError,
)

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str = Field(description="Dotted location of the offending value, e.g. body.threshold")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", examples=["https://fleetpulse.dev/problems/not-found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(default=None, examples=["device d-17 does not exist"])
    instance: str | None = Field(default=None, examples=["/api/v1/devices/d-17"])
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised by handlers; becomes a problem document with ``status``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers or {}


_TYPE_BASE = "https://fleetpulse.dev/problems/"
_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    422: "validation",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal",
    502: "bad-gateway",
    503: "unavailable",
}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=_TYPE_BASE + _TYPES.get(status, "error"),
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    return [
        FieldError(field=".".join(str(p) for p in e.get("loc", ())), message=str(e.get("msg")))
        for e in exc.errors()
    ]


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.status, exc.title, exc.detail, exc.errors, exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response(request, 422, "Unprocessable Content", detail, errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(
        exc.status_code, "HTTP Error"
    )
    headers = dict(exc.headers or {})
    return problem_response(request, exc.status_code, title, str(exc.detail), headers=headers)


async def _on_concurrency(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request,
        412,
        "Precondition Failed",
        "the resource changed concurrently; read it again and retry",
    )


_DOMAIN_STATUS: dict[type[DomainError], tuple[int, str]] = {
    NotFoundError: (404, "Not Found"),
    ConflictError: (409, "Conflict"),
    StaleVersionError: (412, "Precondition Failed"),
    InvalidError: (422, "Unprocessable Content"),
    ForbiddenError: (403, "Forbidden"),
    UnauthenticatedError: (401, "Unauthorized"),
}


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    status, title = next(
        (v for k, v in _DOMAIN_STATUS.items() if isinstance(exc, k)), (400, "Bad Request")
    )
    errors = (
        [FieldError(field=exc.field, message=str(exc))] if isinstance(exc, InvalidError) else None
    )
    return problem_response(request, status, title, str(exc), errors)


async def _on_authentication(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request,
        401,
        "Unauthorized",
        str(exc),
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def _on_credentials(request: Request, exc: Exception) -> JSONResponse:
    log.warning("credentials backend unavailable", extra={"error": str(exc)})
    return problem_response(
        request,
        503,
        "Service Unavailable",
        "the device credentials backend is unavailable; retry later",
        headers={"Retry-After": "5"},
    )


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    """Transient database failures -> 503 (retry); a value the database cannot compute from
    stored data (class 22, e.g. out of range for float8) -> 422; anything else is unexpected."""
    if is_transient(exc):
        log.warning("database unavailable", extra={"error": describe(exc)})
        return problem_response(
            request,
            503,
            "Service Unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, asyncpg.DataError) or (
        isinstance(exc, DataRejectedError) and exc.code.startswith("22")
    ):
        log.warning("database refused the data of a query", extra={"error": describe(exc)})
        return problem_response(
            request,
            422,
            "Unprocessable Content",
            f"the stored data cannot be computed for this request ({describe(exc, 200)})",
        )
    return await _on_unexpected(request, exc)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem_response(request, 500, "Internal Server Error", "unexpected error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(ConcurrencyError, _on_concurrency)
    app.add_exception_handler(DomainError, _on_domain)
    app.add_exception_handler(AuthenticationError, _on_authentication)
    app.add_exception_handler(CredentialsUnavailableError, _on_credentials)
    app.add_exception_handler(asyncpg.PostgresError, _on_database)
    app.add_exception_handler(ExternalError, _on_database)  # translated by a unit of work
    app.add_exception_handler(Exception, _on_unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "description": title,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, title in (
        (401, "Missing or invalid bearer token"),
        (403, "Role missing"),
        (422, "Validation error"),
    )
}
