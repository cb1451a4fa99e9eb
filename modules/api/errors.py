"""A1111's error envelope (a1111-compat.md §1.4) for every HTTPException and unexpected exception:
`{"error": <class name>, "detail": ..., "body": ..., "errors": str(exception)}`.

Request-body validation keeps FastAPI's default 422 shape. Errors whose cause is the request or the
installation (no checkpoint, a feature not available yet) get a 4xx/503 with a readable message
instead of A1111's bare 500.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.app.model_manager import NoCheckpointError
from modules.jobs.queue import QueueFullError
from modules.jobs.service import DuplicateJobError, JobError, QueueUnavailableError
from modules.processing.admission import AdmissionError
from modules.processing.context import UnsupportedRequestError
from modules.scripting.runner import ScriptRunFailed
from modules.processing.memory_guard import InsufficientMemoryError

log = logging.getLogger(__name__)


def status_for_exception(error: BaseException) -> int:
    if isinstance(error, StarletteHTTPException):
        return error.status_code
    if isinstance(error, NoCheckpointError):
        return 503   # the server works, but cannot generate until a checkpoint is added
    if isinstance(error, UnsupportedRequestError):
        return 400
    if isinstance(error, (AdmissionError, InsufficientMemoryError)):
        return 422   # above a server limit, or more memory than the machine has
    if isinstance(error, QueueFullError):
        return 429
    if isinstance(error, JobError):
        return error.status      # decided where the job failed
    if isinstance(error, QueueUnavailableError):
        return 503
    if isinstance(error, DuplicateJobError):
        return 409
    if isinstance(error, ScriptRunFailed) and error.bad_input:
        return 422   # the script refused its arguments
    return 500


def headers_for_exception(error: BaseException) -> dict[str, str] | None:
    if isinstance(error, QueueFullError):
        return {"Retry-After": str(error.retry_after)}
    return getattr(error, "headers", None)


def error_envelope(error: BaseException) -> dict[str, Any]:
    if isinstance(error, JobError):
        return error.body
    detail = getattr(error, "detail", None)
    if detail is None and not isinstance(error, StarletteHTTPException):
        # non-HTTP errors: the message is the useful part for a client
        detail = str(error)
    return {
        "error": type(error).__name__,
        "detail": detail if detail is not None else "",
        "body": getattr(error, "body", None) or "",
        "errors": str(error),
    }


def envelope_response(request: Request, error: BaseException) -> JSONResponse:
    status = status_for_exception(error)
    if status >= 500 and not isinstance(error, (StarletteHTTPException, NoCheckpointError)):
        log.error("API error: %s %s: %s", request.method, request.url.path, error,
                  exc_info=error)
    return JSONResponse(status_code=status, content=error_envelope(error),
                        headers=headers_for_exception(error))


def _json_safe(value: Any) -> Any:
    """NaN/inf (accepted by Python's JSON parser) cannot be written back as strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


async def validation_error_response(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's default 422 shape `{"detail": [{loc, msg, type, ...}]}`, safe for NaN input."""
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(errors))})


def install_error_handlers(app: FastAPI) -> None:
    """Envelope for HTTPException and any other exception raised by a route."""

    async def handle_http_exception(request: Request, error: Exception) -> JSONResponse:
        return envelope_response(request, error)

    async def catch_everything(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as error:  # noqa: BLE001 - every route error becomes an envelope
            return envelope_response(request, error)

    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(NoCheckpointError, handle_http_exception)
    app.add_exception_handler(UnsupportedRequestError, handle_http_exception)
    for refusal in (AdmissionError, InsufficientMemoryError, QueueFullError, JobError,
                    QueueUnavailableError, DuplicateJobError):
        app.add_exception_handler(refusal, handle_http_exception)
    app.add_exception_handler(Exception, handle_http_exception)
    app.middleware("http")(catch_everything)
