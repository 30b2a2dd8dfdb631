"""`belka serve --engine ray`: the same FastAPI app, served by Ray Serve.

What runs where:
- application ``belka`` (HTTP, route ``/``): the ingress deployment, Belka's FastAPI app
  (app/main.py create_app) behind Ray Serve's FastAPI ingress. It reads, checks and
  preprocesses requests and writes the answers exactly as `belka serve` does; only the model
  calls go elsewhere (RayServices below, in place of app/inference/service.py's Services);
- application ``belka-model-<name>`` (no HTTP route) for each converted model with a SavedModel:
  a ModelReplica deployment that loads that one model. Its ``predict`` is batched by Ray
  (``@serve.batch``: up to BELKA_BATCH_MAX images, waiting at most BELKA_BATCH_WAIT_MS) in
  place of our Batcher; explanations and detections are plain calls.

Ray places the replicas (``--replicas N``, or ``--autoscale MIN,MAX`` on the requests in
flight) and replaces one that dies. Back-pressure: each caller queues at most BELKA_QUEUE_MAX
requests per model (Ray's ``max_queued_requests``), beyond that the API answers 503 with
Retry-After, as the uvicorn engine does. A call to a replica that died is tried once more (on
another replica); if that fails too the answer is a 503 while Ray starts a new one.

The `belka serve` process is Ray's driver: it deploys the models it finds, then looks at the
models folder every two seconds, deploying models converted (or saved from /teach) since and
deleting those removed; a re-converted model is reloaded by its replicas on the next request
(they check its manifest, as Services does). The models folder must be readable at the same
path by every Ray node (one machine, or shared storage / the image on a cluster).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np

from app.inference import engine
from app.inference.batching import BatchResult, QueueFull
from app.inference.classifier import Prediction, runnable
from app.inference.explainer import ExplainError, Explanation, score_kind_of
from app.inference.service import Services
from app.registry import ModelInfo, Registry
from app.settings import Settings

INGRESS_APP = "belka"
MODEL_APP_PREFIX = "belka-model-"
POLL_SECONDS = 2.0
# A local Ray instance (no --address): small, stated memory settings for a laptop-sized machine.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
INSTALL_HINT = "belka serve --engine ray needs Ray Serve: pip install -c constraints.txt -e '.[ray]'"


def _serve():
    from ray import serve  # the [ray] extra: `belka serve` checks it is installed before calling here

    return serve


def model_app(name: str) -> str:
    return MODEL_APP_PREFIX + name


def servable(info: ModelInfo) -> bool:
    """A model the server runs: a classifier with a SavedModel or an ONNX model (onnxruntime), or a
    detector with a SavedModel."""
    if info.task == "classification":
        return runnable(info)
    return info.task == "detection" and "saved" in info.manifest.get("formats", ())


# -- in each model's replicas ---------------------------------------------------------------------

class ModelReplica:
    """One converted model in a Ray Serve replica, loaded (and re-loaded when its manifest changes)
    by the same Services the uvicorn engine uses, with our batcher off: Ray batches ``predict``."""

    def __init__(self, settings: Settings, name: str):
        self.name = name
        self.services = Services(Registry(settings.models_dir), replace(settings, batching=False))
        self.services.load(name)  # before the replica counts as started: the first request does not wait

    async def _classifier(self):
        service = await self.services.get(self.name)
        if service is None:
            raise ExplainError(f"{self.name} is no longer a classifier the server can run")
        return service

    async def predict(self, images: list[np.ndarray]) -> list[tuple]:
        """One model call for the images of several requests (Ray gathers them: model_deployment
        wraps this in @serve.batch); per image (outputs, probabilities, inference_ms, batch size)."""
        service = await self._classifier()
        prediction = await asyncio.to_thread(service.classifier.predict, np.stack(images))
        return [(prediction.outputs[i], prediction.probabilities[i], prediction.inference_ms, len(images))
                for i in range(len(images))]

    async def top1(self, image: np.ndarray) -> int:
        return await (await self._classifier()).top1(image)

    async def layers(self):
        return await _as_result((await self._classifier()).layers())

    async def gradcam(self, image: np.ndarray, class_index: int, layer: str | None):
        return await _as_result((await self._classifier()).gradcam(image, class_index, layer))

    async def occlusion(self, image: np.ndarray, class_index: int, patch: int, stride: int):
        return await _as_result((await self._classifier()).occlusion(image, class_index, patch, stride))

    async def detect(self, image: np.ndarray):
        detector = await self.services.detector(self.name)
        if detector is None:
            raise ExplainError(f"{self.name} is no longer a detector with a SavedModel")
        return await detector.run(image)


async def _as_result(call) -> tuple:
    """("ok", value) or ("error", message): an ExplainError comes back as the caller's 422, not
    as a remote traceback."""
    try:
        return "ok", await call
    except ExplainError as exc:
        return "error", str(exc)


# -- in the ingress replicas: what the routes call ----------------------------------------------

@dataclass
class RayModelService(engine.Classifier):
    """The methods of app/inference/service.py's ModelService, each a call to the model's replicas."""
    info: ModelInfo
    calls: "ReplicaCalls"
    max_queue: int

    @property
    def manifest(self) -> dict:
        return self.info.manifest

    @property
    def score_kind(self) -> str:
        return score_kind_of(self.manifest)

    def incoming(self):
        return nullcontext()  # Ray's batch waits its batch_wait_timeout_s whatever arrives

    async def predict(self, images: np.ndarray) -> BatchResult:
        start = time.perf_counter()
        rows = await asyncio.gather(*(self.calls.call("predict", image) for image in images),
                                    return_exceptions=True)
        for row in rows:
            if isinstance(row, BaseException):  # (every call finished: nothing is left unawaited)
                raise row
        round_trip = (time.perf_counter() - start) * 1000
        outputs = np.stack([row[0] for row in rows])
        probabilities = np.stack([row[1] for row in rows])
        inference_ms = max(row[2] for row in rows)
        # queue_ms: the time around the model call (queueing in Ray, batching, transfers)
        return BatchResult(Prediction(outputs, probabilities, inference_ms), batch_size=max(row[3] for row in rows),
                           queue_ms=max(0.0, round_trip - inference_ms))

    async def top1(self, image: np.ndarray) -> int:
        return await self.calls.call("top1", image)

    async def layers(self):
        return _value(await self.calls.call("layers"))

    async def gradcam(self, image: np.ndarray, class_index: int, layer: str | None) -> tuple[str, Explanation]:
        return _value(await self.calls.call("gradcam", image, class_index, layer))

    async def occlusion(self, image: np.ndarray, class_index: int, patch: int, stride: int) -> Explanation:
        return _value(await self.calls.call("occlusion", image, class_index, patch, stride))


@dataclass
class RayDetectorService(engine.Detector):
    info: ModelInfo
    calls: "ReplicaCalls"

    @property
    def manifest(self) -> dict:
        return self.info.manifest

    async def run(self, image: np.ndarray):
        return await self.calls.call("detect", image)


def _value(result: tuple):
    status, value = result
    if status == "error":
        raise ExplainError(value)
    return value


class ReplicaCalls:
    """Calls to one model's replicas: busy replicas and a replica that died become QueueFull (503
    with Retry-After); a call that met a dead replica is tried once more first."""

    def __init__(self, name: str):
        self.name = name
        self._handle = None

    def handle(self):
        if self._handle is None:
            serve = _serve()
            try:
                self._handle = serve.get_app_handle(model_app(self.name))
            except Exception as exc:  # noqa: BLE001 - Ray says "application not found" in several ways
                raise QueueFull(f"{self.name} is being deployed") from exc
        return self._handle

    async def call(self, method: str, *args):
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        for attempt in (1, 2):
            try:
                return await getattr(self.handle(), method).remote(*args)
            except BackPressureError as exc:
                raise QueueFull(f"{self.name}'s replicas have too many requests waiting") from exc
            except (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError) as exc:
                if attempt == 2:
                    raise QueueFull(f"a replica of {self.name} stopped and Ray is replacing it") from exc


class RayServices(engine.Engine):
    """app/inference/service.py's Services for the ingress: the models run in their own replicas."""

    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self.settings = settings
        self._calls: dict[str, ReplicaCalls] = {}

    def load_all(self) -> None:
        """The models load in their own replicas; the ingress preprocesses images with TensorFlow,
        imported now so the first requests do not wait for it."""
        from app import tf_runtime

        tf_runtime.tensorflow()

    def _replicas(self, name: str) -> ReplicaCalls:
        calls = self._calls.get(name)
        if calls is None:
            calls = self._calls[name] = ReplicaCalls(name)
        return calls

    async def get(self, name: str) -> RayModelService | None:
        info = self.registry.get(name)
        if info is None or info.task != "classification" or not servable(info):
            return None
        return RayModelService(info, self._replicas(name), self.settings.queue_max)

    async def detector(self, name: str) -> RayDetectorService | None:
        info = self.registry.get(name)
        if info is None or info.task != "detection" or not servable(info):
            return None
        return RayDetectorService(info, self._replicas(name))

    async def close(self) -> None:
        pass


# -- the driver: `belka serve --engine ray` -------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    """How many replicas each deployment gets: a fixed count, or autoscaling between two."""
    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    replica_cpus: float = 1.0

    def most(self) -> int:
        return self.autoscale[1] if self.autoscale else self.replicas

    def options(self, settings: Settings) -> dict:
        if self.autoscale:
            low, high = self.autoscale
            # Ray adds replicas when each holds more than this many requests; a model replica
            # works best with a batch in hand, so the target is half a batch.
            scaling = {"autoscaling_config": {"min_replicas": low, "max_replicas": high, "initial_replicas": low,
                                              "target_ongoing_requests": max(2, settings.batch_max // 2)}}
        else:
            scaling = {"num_replicas": self.replicas}
        return scaling


def model_deployment(settings: Settings, scale: Scale, name: str):
    serve = _serve()
    batched = type("ModelReplica", (ModelReplica,), {
        "predict": serve.batch(max_batch_size=max(1, settings.batch_max),
                               batch_wait_timeout_s=settings.batch_wait_ms / 1000)(ModelReplica.predict),
    })
    deployment = serve.deployment(
        batched, name="ModelReplica",
        max_ongoing_requests=max(1, settings.batch_max),  # a full batch per replica at once
        max_queued_requests=max(1, settings.queue_max),
        ray_actor_options={"num_cpus": scale.replica_cpus},
        health_check_period_s=2, **scale.options(settings))
    return deployment.bind(settings, name)


class BelkaAsgi:
    """Belka's FastAPI app as Ray Serve's ingress sees it: an ASGI callable with no ``routes``.
    Ray Serve 2.52 reads an app's ``routes`` to name requests in its metrics and logs, and fails
    on every request (a traceback in the replica's log) on the routers FastAPI now includes lazily;
    with no routes it names them by the route prefix ("/")."""

    routes: list = []
    router = SimpleNamespace(redirect_slashes=False)  # (read with ``routes``)

    def __init__(self, app):
        self.app = app

    def add_exception_handler(self, exc, handler) -> None:  # Ray adds its 503 for back-pressure
        self.app.add_exception_handler(exc, handler)

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def ingress_deployment(settings: Settings, scale: Scale):
    serve = _serve()

    def build():
        from app.main import create_app

        return BelkaAsgi(create_app(settings, engine=RayServices))

    ingress = serve.deployment(serve.ingress(build)(), name="Ingress",
                               max_ongoing_requests=1024,  # async: it waits on the models, it does not compute
                               ray_actor_options={"num_cpus": 0}, **scale.options(settings))
    return ingress.bind()


def _servable_models(settings: Settings) -> dict[str, ModelInfo]:
    return {name: info for name, info in Registry(settings.models_dir).all().items() if servable(info)}


def sync_models(settings: Settings, scale: Scale, deployed: set[str], say=print) -> set[str]:
    """Deploys the models in the folder that are not deployed yet and deletes those that are gone;
    the names deployed now."""
    serve = _serve()
    found = _servable_models(settings)
    for name in sorted(set(found) - deployed):
        serve.run(model_deployment(settings, scale, name), name=model_app(name), route_prefix=None)
        say(f"Deployed {name} ({found[name].task}) on Ray Serve")
    for name in sorted(deployed - set(found)):
        serve.delete(model_app(name))
        say(f"Removed {name} from Ray Serve (its folder is gone)")
    return set(found)


def start_ray(address: str | None, settings: Settings, scale: Scale) -> str:
    """ray.init: the cluster at ``address``, or a local single-node instance; what was started, in words."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs here: silences a FutureWarning
    import ray

    # serve.run restates Serve's default HTTP options each time and warns that they are ignored
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        return f"the Ray cluster at {address}"
    # Ray runs its workers at nice 15 by default; the replicas are this server's work, and they
    # should not yield the machine's cores to every other program (uvicorn runs at nice 0 too).
    os.environ.setdefault("RAY_worker_niceness", "0")
    models = max(1, len(_servable_models(settings)))
    # Ray's CPUs are for placement: enough for every model's replicas (and a few more models),
    # whatever the machine has; TensorFlow in each replica still shares the real cores.
    cpus = max(os.cpu_count() or 1, math.ceil((models + 4) * scale.most() * scale.replica_cpus))
    ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
             _node_ip_address="127.0.0.1",  # Ray's own services listen on this machine only
             logging_level="WARNING", log_to_driver=False)
    return (f"a local Ray instance ({cpus} logical CPUs on {os.cpu_count()} cores, "
            f"{LOCAL_OBJECT_STORE_BYTES // 2**20} MB object store)")


def run(settings: Settings, scale: Scale, address: str | None) -> None:
    """Starts (or joins) Ray, deploys the models and the app, then keeps the deployed models in step
    with the models folder until Ctrl-C or SIGTERM; everything is taken down on the way out."""
    import ray

    serve = _serve()
    where = start_ray(address, settings, scale)
    # After ray.init, which installs its own SIGTERM handler (it prints a stack and exits).
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config={"log_level": "WARNING"})
        deployed = sync_models(settings, scale, set(), say=_say)
        serve.run(ingress_deployment(settings, scale), name=INGRESS_APP, route_prefix="/")
        replicas = (f"{scale.autoscale[0]}-{scale.autoscale[1]} replicas (autoscaling)" if scale.autoscale
                    else f"{scale.replicas} replica{'s' if scale.replicas != 1 else ''}")
        _say(f"Belka on Ray Serve ({where}) at http://{settings.host}:{settings.port}/: "
             f"{replicas} per model, ready")
        while not stop:
            time.sleep(POLL_SECONDS)
            deployed = sync_models(settings, scale, deployed, say=_say)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
