"""The FastAPI app: create_app(settings) wires the pages, the files and /healthz."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

from app import __version__, errors, files, pages
from app.headers import SecurityHeadersMiddleware
from app.registry import Registry
from app.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="Belka", version=__version__)
    app.state.settings = settings
    app.state.registry = Registry(settings.models_dir)
    app.add_middleware(SecurityHeadersMiddleware)
    errors.install(app)
    app.include_router(pages.router)
    app.include_router(files.router)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict:
        """Liveness for the Docker health check, with the models the server can see."""
        return {"status": "ok", "models": sorted(request.app.state.registry.all())}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(settings.static_dir / "favicon.svg", media_type="image/svg+xml")

    return app
