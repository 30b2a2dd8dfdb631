"""The API's dependencies (FastAPI ``Depends``): what a route needs from the app, in one place.

The app's shared state (app/main.py ``create_app`` puts it on ``app.state``) is read here and
nowhere else in the routes and pages: ``settings_of``, ``registry_of``, ``engine_of`` and
``assets_of`` read it from a request (for the pages and their templates' context), and the
routes take it as dependencies:

- ``SettingsDep``, ``RegistryDep``, ``EngineDep``: the server's Settings, its model Registry and
  its Engine (app/inference/engine.py: Services or RayServices);
- ``model_of(task)``: the model NAME of the path (``/models/{name}/...``) of this task, ready to
  run (a Classifier for "classification", a Detector for "detection"), or a 404;
- ``info_of(task)``: the registry's entry for the model NAME of this task, or a 404 (for routes
  that read the model's files rather than run it).

The 404's message is the API's usual one: "no classification model named 'x'; GET /api/models
lists them" (the JSON error shape comes from app/errors.py). The dependencies are ``async def``:
they run on the event loop, not on a worker thread.
"""
from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request

from app.assets import Assets
from app.inference.engine import Classifier, Detector, Engine
from app.registry import ModelInfo, Registry
from app.settings import Settings


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    return request.app.state.settings


def registry_of(request: Request) -> Registry:
    """The models folder's registry (what is converted there now)."""
    return request.app.state.registry


def engine_of(request: Request) -> Engine:
    """What runs the models (Services, or RayServices on `--engine ray`)."""
    return request.app.state.services


def assets_of(request: Request) -> Assets:
    """The content-hashed URLs of static/ and the vendored TF.js (app/assets.py)."""
    return request.app.state.assets


# as dependencies: async, so they run on the event loop rather than on a worker thread
async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_registry(request: Request) -> Registry:
    return registry_of(request)


async def get_engine(request: Request) -> Engine:
    return engine_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def not_found(task: str, name: str) -> HTTPException:
    return HTTPException(404, f"no {task} model named {name!r}; GET /api/models lists them")


def model_of(task: str) -> Callable:
    """A dependency: the model ``name`` (the path parameter) of ``task`` ("classification" or
    "detection"), ready to run; a 404 when the engine has no such model."""
    if task not in ("classification", "detection"):
        raise ValueError(f"no engine models of task {task!r}")

    async def model(name: str, engine: EngineDep) -> Classifier | Detector:
        found = await (engine.get(name) if task == "classification" else engine.detector(name))
        if found is None:
            raise not_found(task, name)
        return found

    return model


def info_of(task: str) -> Callable:
    """A dependency: the registry's entry for the model ``name`` (the path parameter) of
    ``task``; a 404 when there is none."""
    async def info(name: str, registry: RegistryDep) -> ModelInfo:
        found = registry.get(name)
        if found is None or found.task != task:
            raise not_found(task, name)
        return found

    return info


ClassifierDep = Annotated[Classifier, Depends(model_of("classification"))]
DetectorDep = Annotated[Detector, Depends(model_of("detection"))]
