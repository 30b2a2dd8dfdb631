"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI
schema (/openapi.json) for GET /api/models, POST /api/models/{name}/predict, GET
/api/models/{name}/layers and POST /api/models/{name}/explain, valid and invalid ones, and no
answer may be a server error (5xx).

The ``name`` path parameter is pinned to the real model so that the generated bodies reach
the request parsing and validation code instead of stopping at a 404.
"""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from app.main import create_app
from app.settings import Settings

MODEL = "tiny"
MAX_EXAMPLES = 40
STATUSES: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def api_schema(small_mobilenet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis-models")
    (folder / MODEL).symlink_to(small_mobilenet["dir"], target_is_directory=True)
    app = create_app(Settings(models_dir=folder))
    config = SchemathesisConfig.from_dict({
        "seed": 20240601,  # the same requests on every run
        "generation": {"max-examples": MAX_EXAMPLES},
        "parameters": {"path.name": MODEL},
    })
    # schemathesis starts the app's lifespan (which loads the model) before the first request
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex=r"^/api/")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    STATUSES.setdefault(f"{case.method} {case.path}", Counter())[response.status_code] += 1
    assert response.status_code < 500
    if response.status_code >= 400:  # every error answer has the one JSON error shape
        error = response.json()["error"]
        assert set(error) == {"code", "message", "detail"}, error


def test_the_generated_requests_reached_every_operation():
    """A guard for the test above: it really ran, and predict and explain requests got past the 404."""
    listing = STATUSES.get("GET /api/models")
    predict = STATUSES.get("POST /api/models/{name}/predict")
    explain = STATUSES.get("POST /api/models/{name}/explain")
    if listing is None or predict is None or explain is None:
        pytest.skip("run together with test_no_server_errors")
    assert listing[200] > 0, listing
    assert sum(predict.values()) >= MAX_EXAMPLES // 2, predict
    assert sum(n for status, n in predict.items() if status != 404) > 0, predict
    assert predict[200] > 0, predict  # schemathesis's generated PNGs really went through the model
    assert sum(n for status, n in explain.items() if status != 404) >= MAX_EXAMPLES // 2, explain
    assert STATUSES["GET /api/models/{name}/layers"][200] > 0
    assert not any(path.startswith("/healthz") for path in STATUSES)
