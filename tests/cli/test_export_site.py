"""`belka export-site DIR` (app/site.py), without a browser: what the folder holds, that every
file a page names is in it (under the base path), what it leaves out, and its errors, each with
nothing written. tests/browser/test_static_site.py runs the pages on a static file server."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_belka, snapshot

LOCAL_URL = re.compile(r'(?:href|src|data-vendor)="(/[^"#?]*)')


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_mobilenet, tiny_graph_only, small_detector):
    folder = tmp_path_factory.mktemp("export") / "models"
    shutil.copytree(small_mobilenet["dir"], folder / "mobilenet")
    shutil.copytree(tiny_graph_only["dir"], folder / "tiny")
    shutil.copytree(small_detector["dir"], folder / "squares")
    return folder


@pytest.fixture(scope="module")
def exported(models):
    out = models.parent / "site"
    proc = run_belka("export-site", out, "--models-dir", models, "--base-path", "/demo/", "--json",
                     env={"BELKA_MODEL": "mobilenet"})
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def config_of(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="belka-config">(.*?)</script>', html, re.S)
    return json.loads(found[1]) if found else {}


def test_every_page_for_every_model(exported):
    out, summary = exported
    assert summary["models"] == ["mobilenet", "squares", "tiny"] and summary["base_path"] == "/demo/"
    for folder in ["", "m/tiny/", "detect/", "teach/", "teach/m/tiny/", "learn/", "learn/line/",
                   "learn/convolution/", "learn/convolution/m/tiny/", "learn/pca/", "learn/pca/m/tiny/"]:
        assert folder in summary["pages"], folder
        assert (out / folder / "index.html").is_file(), folder
    home = (out / "index.html").read_text()
    assert 'data-base="/demo/" data-site="static"' in home
    assert config_of(home)["modelPages"] == {"mobilenet": "/demo/", "tiny": "/demo/m/tiny/"}
    assert config_of((out / "m/tiny/index.html").read_text())["model"] == "tiny"
    assert 'http-equiv="Content-Security-Policy"' in home and 'href="/docs"' not in home
    assert "Saving needs Belka's server" in (out / "teach/index.html").read_text()


def test_every_file_a_page_names_is_there(exported):
    out, _ = exported
    for page in out.rglob("index.html"):
        html = page.read_text()
        config = config_of(html)
        urls = LOCAL_URL.findall(html) + [s["url"] for s in config.get("samples", [])] + \
            list(config.get("modelPages", {}).values())
        assert urls, page
        for url in urls:
            assert url.startswith("/demo/"), (page, url)
            target = out / url[len("/demo/"):]
            assert target.is_file() or (target / "index.html").is_file() or \
                (url.endswith("/") and target.is_dir()), (page, url)  # (data-vendor: a folder)
    vendor = next((out / "vendor").iterdir())
    assert (vendor / "tfjs-core/dist/tf-core.es2017.min.js").is_file()
    assert len(list(vendor.glob("tfjs-backend-wasm/dist/*.wasm"))) == 3


def test_the_models_are_the_browsers_part_only(exported, models):
    out, _ = exported
    for name in ("mobilenet", "tiny", "squares"):
        assert not (out / "models" / name / "saved_model").exists()
        manifest = json.loads((out / "models" / name / "manifest.json").read_text())
        assert manifest == json.loads((models / name / "manifest.json").read_text())
        model = json.loads((out / "models" / name / "graph" / "model.json").read_text())
        paths = [p for group in model["weightsManifest"] for p in group["paths"]]
        assert paths and all(re.fullmatch(r"[^?]+\.bin\?v=[0-9a-f]{16}", p) for p in paths)
        assert all((out / "models" / name / "graph" / p.split("?")[0]).is_file() for p in paths)
    assert (out / "sw.js").is_file() and (out / ".belka-site").is_file()


def test_headers_and_readme_say_what_the_host_must_send(exported):
    out, _ = exported
    headers = (out / "_headers").read_text()
    assert "/demo/*\n  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp" in headers
    assert "/demo/static/*\n  Cache-Control: public, max-age=31536000, immutable" in headers
    assert headers.count("Cache-Control") == 2  # hosts merge matching rules: one rule per header
    readme = (out / "README.md").read_text()
    assert "/demo/" in readme and "nginx" in readme and "GitHub Pages" in readme


def test_a_second_export_replaces_the_first(models, tmp_path):
    out = tmp_path / "site"
    assert run_belka("export-site", out, "--models-dir", models, "--models", "tiny").returncode == 0
    proc = run_belka("export-site", out, "--models-dir", models, "--models", "squares", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"] == ["squares"]
    assert sorted(p.name for p in (out / "models").iterdir()) == ["squares"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no staging folder left


@pytest.mark.parametrize(("args", "says"), [
    (["--models", "tiny,nope"], "no model 'nope'"),
    (["--base-path", "/a b/"], "--base-path"),
])
def test_bad_input_writes_nothing(models, tmp_path, args, says):
    out = tmp_path / "site"
    proc = run_belka("export-site", out, "--models-dir", models, *args)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_an_export_is_left_alone(models, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    proc = run_belka("export-site", out, "--models-dir", models)
    assert proc.returncode == 2 and "not a Belka site export" in proc.stderr
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_the_site_has_every_vendor_file_the_pages_name():
    """static/js/vendor.js names what the pages load from npm; an exported site (app/site.py
    VENDOR_FILES) has nothing else to serve them from."""
    from app.site import VENDOR_FILES

    script = ("import('./static/js/vendor.js').then((v) => console.log(JSON.stringify([...v.TF_PARTS, v.TF_LAYERS, "
              "...Object.values(v.BACKEND_BUNDLES).flatMap((b) => [b.bundle, ...b.warm].map((f) => b.dir + f))])))")
    named = json.loads(subprocess.run(["node", "-e", script], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout)
    assert len(named) >= 8 and set(named) <= set(VENDOR_FILES), sorted(set(named) - set(VENDOR_FILES))
