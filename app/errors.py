"""One JSON error shape for every error the server returns:
``{"error": {"code": "...", "message": "...", "detail": ...}}`` with the right status."""
from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.inference.batching import QueueFull


def error_response(status: int, message: str, detail=None, headers: dict | None = None) -> JSONResponse:
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return JSONResponse({"error": {"code": code, "message": message, "detail": detail}},
                        status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull):
        """Too much work waiting (or, on Ray, too few replicas for the moment): come back soon."""
        return error_response(503, f"the server is busy: {exc}; retry in a second", headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # where and why only: the rejected input can be large (an image's floats) or not JSON (bytes)
        problems = [{key: problem[key] for key in ("type", "loc", "msg") if key in problem}
                    for problem in exc.errors()]
        said = "; ".join(f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
                         for problem in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return error_response(422, f"invalid request: {said}{more}" if said else "invalid request", detail=problems)
