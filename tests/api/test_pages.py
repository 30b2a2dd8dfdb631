"""The pages' model picker (app/pages.py): which model a page runs, what the picker lists, and
what the page says about a ?model= it cannot show. Server side only: the browser tests
(tests/browser/test_model_picker.py) pick models in Chromium."""
from __future__ import annotations

import html as html_module
import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def page_config(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="belka-config">(.*?)</script>', html, re.S)[1])


def picker(html: str) -> list[tuple[str, str, bool]]:
    """The picker's options: (value, label, selected)."""
    select = re.search(r'<select id="model-select" name="model">(.*?)</select>', html, re.S)[1]
    return [(value, label.strip(), bool(selected)) for value, selected, label in
            re.findall(r'<option value="([^"]+)"( selected)?>([^<]*)</option>', select)]


def model_note(html: str) -> str | None:
    found = re.search(r'<p class="banner banner-warning" id="model-note" role="status">(.*?)</p>', html, re.S)
    return found and html_module.unescape(found[1])


@pytest.fixture
def folder(small_mobilenet, small_detector, tmp_path):
    """Two classifiers (one a float16-only copy: another size) and a detector."""
    models = tmp_path / "models"
    shutil.copytree(small_mobilenet["dir"], models / "alpha")
    shutil.copytree(small_mobilenet["dir"], models / "beta")
    manifest = json.loads((models / "beta" / "manifest.json").read_text())
    manifest["page_weights"] = None  # beta's page download: its float32 graph/, twice alpha's float16 one
    (models / "beta" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(small_detector["dir"], models / "squares")
    return models


@pytest.fixture
def client(folder):
    return TestClient(create_app(Settings(models_dir=folder)))


def test_the_picker_lists_each_pages_models_with_size_and_weights(client, small_mobilenet):
    html = client.get("/").text
    options = picker(html)
    assert [value for value, _, _ in options] == ["alpha", "beta"]  # no detector on the classify page
    assert [selected for _, _, selected in options] == [True, False]
    files = small_mobilenet["manifest"]["files"]
    half = sum(f["bytes"] for f in files if f["path"].startswith("graph-float16/"))
    full = sum(f["bytes"] for f in files if f["path"].startswith("graph/"))
    assert options[0][1] == f"alpha · 96×96 · {half / 1e6:.2f} MB float16"
    assert options[1][1] == f"beta · 96×96 · {full / 1e6:.2f} MB float32"
    assert page_config(html)["model"] == "alpha" and model_note(html) is None

    detect = client.get("/detect").text
    assert [(value, selected) for value, _, selected in picker(detect)] == [("squares", True)]
    assert page_config(detect)["model"] == "squares"


def test_model_in_the_address_is_shown_and_remembered(client):
    first = client.get("/?model=beta&backend=wasm")
    assert page_config(first.text)["model"] == "beta"
    assert [value for value, _, selected in picker(first.text) if selected] == ["beta"]
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("belka_model_classification=beta;") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    # the next visit without ?model= opens the remembered model (TestClient keeps cookies)
    assert page_config(client.get("/").text)["model"] == "beta"
    # each page remembers its own kind
    assert page_config(client.get("/detect").text)["model"] == "squares"
    # the address still wins, and a new pick replaces the remembered one
    assert page_config(client.get("/?model=alpha").text)["model"] == "alpha"
    assert page_config(client.get("/").text)["model"] == "alpha"


def test_an_unknown_model_is_said_and_the_default_shown(client):
    response = client.get("/?model=qqqq")
    assert page_config(response.text)["model"] == "alpha"
    assert model_note(response.text) == ('There is no image classifier "qqqq" in this server\'s models folder; '
                                         "pick one of: alpha, beta.")
    assert "set-cookie" not in response.headers
    wrong_page = client.get("/?model=squares")
    assert model_note(wrong_page.text) == ('"squares" is an object detector, not an image classifier: '
                                           "open it on /detect?model=squares.")
    assert page_config(wrong_page.text)["model"] == "alpha"
    assert model_note(client.get("/detect?model=beta").text) == (
        '"beta" is an image classifier, not an object detector: open it on /?model=beta.')
    # markup in the name is text, not HTML
    assert "<b>" not in client.get("/?model=%3Cb%3Ex").text


def test_a_model_converted_while_the_server_runs_is_listed_on_the_next_load(client, folder):
    assert [value for value, _, _ in picker(client.get("/").text)] == ["alpha", "beta"]
    shutil.copytree(folder / "alpha", folder / "gamma")
    html = client.get("/?model=gamma").text
    assert [value for value, _, _ in picker(html)] == ["alpha", "beta", "gamma"]
    assert page_config(html)["model"] == "gamma"
    # a remembered model that was removed: the default again, quietly
    shutil.rmtree(folder / "gamma")
    html = client.get("/").text
    assert page_config(html)["model"] == "alpha" and model_note(html) is None


def test_belka_model_sets_the_default(folder):
    client = TestClient(create_app(Settings(models_dir=folder, default_model="beta")))
    assert page_config(client.get("/").text)["model"] == "beta"
    assert page_config(client.get("/?model=alpha").text)["model"] == "alpha"
