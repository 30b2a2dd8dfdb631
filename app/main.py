"""The FastAPI app: create_app(settings) wires the pages, the files, the API and /healthz."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from app import __version__, errors, files, pages
from app.api import detect as detect_api
from app.api import explain as explain_api
from app.api import learn as learn_api
from app.api import models as models_api
from app.api import predict as predict_api
from app.api import teach as teach_api
from app.api.deps import RegistryDep
from app.assets import Assets
from app.headers import SecurityHeadersMiddleware
from app.inference.engine import Engine
from app.inference.service import Services
from app.registry import Registry
from app.settings import Settings


def create_app(settings: Settings | None = None, engine: Callable[[Registry, Settings], Engine] = Services
               ) -> FastAPI:
    """The app. ``engine`` makes what runs the models: Services (this process, the default) or
    app/ray_engine.py's RayServices (`belka serve --engine ray`), both app/inference/engine.py's
    Engine; the routes are the same. What the routes share (settings, registry, engine, assets)
    is on ``app.state``, which app/api/deps.py reads for them."""
    settings = settings or Settings.from_env()
    registry = Registry(settings.models_dir)
    services = engine(registry, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(services.load_all)  # each SavedModel loaded once, at start-up
        yield
        await services.close()

    app = FastAPI(title="Belka", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Belka's REST API: the converted models, server-side predictions "
                              "and explanations (Grad-CAM, occlusion), to check what the browser computes against "
                              "TensorFlow.")
    app.state.settings = settings
    app.state.registry = registry
    app.state.services = services
    app.state.assets = Assets(settings.static_dir, settings.node_modules, settings.base_path)
    app.add_middleware(SecurityHeadersMiddleware)
    # pages and API answers (JSON, HTML) gzipped when over 1 kB; files come compressed from
    # app/files.py already, weight shards and uploads' binary answers are left alone
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6,
                       exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream"))
    errors.install(app)
    app.include_router(pages.router)
    app.include_router(files.router)
    app.include_router(models_api.router)
    app.include_router(predict_api.router)
    app.include_router(explain_api.router)
    app.include_router(detect_api.router)
    app.include_router(teach_api.router)
    app.include_router(learn_api.router)

    @app.get("/healthz", tags=["health"])
    def healthz(registry: RegistryDep) -> dict:
        """Liveness for the Docker health check, with the models the server can see."""
        return {"status": "ok", "models": sorted(registry.all())}

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        """Swagger UI for the OpenAPI schema, from npm (FastAPI's default loads it from a CDN)."""
        return pages.TEMPLATES.TemplateResponse(request, "docs.html", {"openapi_url": app.openapi_url})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(files.safe_path(settings.static_dir, "favicon.svg"), media_type="image/svg+xml")

    @app.get("/sw.js", include_in_schema=False)
    def service_worker(request: Request):
        """The service worker (static/sw.js) at the root, so its scope is the whole site."""
        return files.static_file("sw.js", request)

    return app
