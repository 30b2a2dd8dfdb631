"""/teach end to end (issue 14): two classes taught in the page from pictures this test makes
(reddish vs bluish noise, each with a grey patch somewhere), trained in the
model's worker on the session's MobileNetV2 0.35/96 features, saved to the server, and then the
server's /predict and the page agree on pictures the training never saw; on wasm and webgl.
Training is seeded: the same pictures and settings give the same head."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from tests.browser.conftest import new_page, serve

BASE = "mobilenet-v2-0.35-96"
COLOURS = {"reddish": (200, 40, 40), "bluish": (40, 60, 210)}
TRAIN, HELD_BACK = 16, 4
SETTINGS = {"epochs": 60, "learningRate": 0.01, "batchSize": 8, "hidden": 0, "validationSplit": 0.25, "seed": 0}

ADD = """async ([index, pictures]) => belka.addSamples(index, pictures.map((b64) =>
  new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], {type: 'image/png'})))"""
CLASSIFY = """async (b64) => belka.classifyBlob(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
  {type: 'image/png'}))"""
PREDICT = """async (b64) => belka.predictBlob(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
  {type: 'image/png'}))"""


def pictures(colour, count: int, rng) -> list[str]:
    import base64

    from PIL import Image

    out = []
    for _ in range(count):
        image = rng.normal(0, 15, (80, 100, 3)) + np.array(colour)
        y, x = rng.integers(0, 55), rng.integers(0, 70)
        image[y:y + 20, x:x + 25] = 128
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_mobilenet, tiny_graph_only):
    import shutil

    models = tmp_path_factory.mktemp("teach") / "models"
    shutil.copytree(small_mobilenet["dir"], models / BASE)
    shutil.copytree(tiny_graph_only["dir"], models / "tiny")
    with serve(models) as url:
        yield url


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    return {name: {"train": pictures(colour, TRAIN, rng), "held": pictures(colour, HELD_BACK, rng)}
            for name, colour in COLOURS.items()}


def teach(page, samples, settings=SETTINGS) -> dict:
    for index, name in enumerate(COLOURS):
        page.evaluate("([i, n]) => belka.renameClass(i, n)", [index, name])
        assert page.evaluate(ADD, [index, samples[name]["train"]]) == TRAIN
    assert page.evaluate("belka.classes()") == [{"name": n, "count": TRAIN} for n in COLOURS]
    return page.evaluate("(s) => belka.train(s)", settings)


def check_against_the_server(page, server, samples, name, size=96, learned=True) -> None:
    """The page's taught head and the server's saved model agree on the held-back pictures:
    logits, and the Grad-CAM the page draws (base and head differentiated as one model in the
    worker) against the server's Grad-CAM of the saved model, for each class of a picture of
    each colour."""
    informative = 0
    for colour in COLOURS:
        for k, b64 in enumerate(samples[colour]["held"]):
            mine = page.evaluate(PREDICT, b64)
            top = mine["top"][0]
            assert top["label"] == colour or not learned
            image = np.array(mine["input"], np.float32).reshape(1, size, size, 3)
            served = httpx.post(f"{server}/api/models/{name}/predict?include_logits=true&top_k=2",
                                json={"instances": image.tolist()}, timeout=120)
            assert served.status_code == 200, served.text
            prediction = served.json()["predictions"][0]
            np.testing.assert_allclose(mine["logits"], prediction["logits"], rtol=0, atol=1e-4)
            assert prediction["top_k"][0]["label"] == top["label"]
            if k:
                continue
            assert mine["gradcam"]["classIndex"] == top["index"]
            assert 'Where it looked for "%s"' % top["label"] in page.locator("#try-caption").inner_text()
            for index in range(len(COLOURS)):  # the top class's came with the prediction; the other is picked
                cam = mine["gradcam"] if index == top["index"] else page.evaluate("(c) => belka.explainTaught(c)", index)
                assert "error" not in cam and cam["classIndex"] == index, cam
                explained = httpx.post(f"{server}/api/models/{name}/explain", timeout=120, json={
                    "instances": image.tolist(), "method": "gradcam", "layer": cam["layer"],
                    "class_index": index}).json()
                informative += same_heatmap(cam["heatmap"], explained["heatmap"])
    assert informative >= 2  # heatmaps with something in them, not only all-zero ones that agree


def same_heatmap(page_heatmap, server_heatmap) -> bool:
    """Asserts two Grad-CAM heatmaps agree: correlation >= 0.99, or both (nearly) all zeros when
    nothing pushes the class up. True when they hold something."""
    heat, expected = np.array(page_heatmap).ravel(), np.array(server_heatmap).ravel()
    assert heat.shape == expected.shape
    if heat.std() < 1e-6 or expected.std() < 1e-6:
        np.testing.assert_allclose(heat, expected, atol=1e-3)
        return False
    assert np.corrcoef(heat, expected)[0, 1] >= 0.99
    return True


def test_taught_in_the_page_saved_and_the_server_agrees(browser, server, samples):
    """Taught and saved on wasm; then on webgl: taught there too (its own features), and the
    saved head put back in that page agrees with the server's model (one conversion, not two)."""
    page = new_page(browser)
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{server}/teach?backend=wasm")
        assert page.evaluate("belka.ready") == {"ok": True, "backend": "wasm"}
        result = teach(page, samples)
        last = result["history"][-1]
        assert len(result["history"]) == SETTINGS["epochs"]
        assert len(result["split"]["val"]) == 2 * round(TRAIN * SETTINGS["validationSplit"])
        assert last["valAccuracy"] >= 0.95, last
        assert "Done. Epoch 60 of 60" in page.locator("#train-status").inner_text()

        confusion = np.array(page.evaluate("belka.confusion()"))
        assert confusion.sum() == len(result["split"]["val"]) and np.trace(confusion) >= 0.95 * confusion.sum()
        assert "right." in page.locator("#confusion caption").inner_text()

        # the same pictures and settings train the same head
        again = page.evaluate("(s) => belka.train(s)", SETTINGS)
        np.testing.assert_allclose(again["data"], result["data"], rtol=0, atol=1e-6)

        name = "colours"
        saved = page.evaluate("(o) => belka.save(o)", {"name": name, "replace": True})
        assert saved["status"] == 201, saved
        assert f'Saved as "{name}"' in page.locator("#save-status").inner_text()
        check_against_the_server(page, server, samples, name)
        # the saved model is a model like any other: in the classify page's picker, with Grad-CAM
        # for the taught classes (base and head are one layers model there) matching the server's
        page.goto(f"{server}/?model={name}&backend=wasm&weights=float32")
        assert page.evaluate("belka.ready")["ok"] and page.evaluate("belka.model()") == name
        classified = page.evaluate(CLASSIFY, samples["reddish"]["held"][0])
        assert classified["top5"][0]["label"] == "reddish"
        mine = page.evaluate("belka.explain({method: 'gradcam', classIndex: 0})")
        assert "error" not in mine and mine["model"] == "layers", mine
        image = np.array(classified["input"], np.float32).reshape(1, 96, 96, 3)
        served = httpx.post(f"{server}/api/models/{name}/explain", timeout=120, json={
            "instances": image.tolist(), "method": "gradcam", "layer": mine["layer"], "class_index": 0}).json()
        heat, expected = np.array(mine["heatmap"]).ravel(), np.array(served["heatmap"]).ravel()
        assert np.corrcoef(heat, expected)[0, 1] >= 0.99
    finally:
        page.context.close()

    page = new_page(browser)
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{server}/teach?backend=webgl")
        assert page.evaluate("belka.ready") == {"ok": True, "backend": "webgl"}
        assert teach(page, samples)["history"][-1]["valAccuracy"] >= 0.95
        page.evaluate("(head) => belka.worker('useHead', head)",
                      {"weightSpecs": result["weightSpecs"], "data": result["data"]})
        check_against_the_server(page, server, samples, name)
    finally:
        page.context.close()


def test_a_base_without_a_layers_model(browser, server, samples):
    """The tiny classifier converted without a layers model: features from its graph model, Grad-CAM
    through the head on the graph (GraphGradCam), saved on the server from its SavedModel; the
    page and the server agree on logits and heatmaps."""
    page = new_page(browser)
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{server}/teach?model=tiny&backend=wasm")
        assert page.evaluate("belka.ready") == {"ok": True, "backend": "wasm"}
        assert page.evaluate("belka.model()") == "tiny"
        # (its untrained 12 features hardly tell the colours apart: what counts here is agreement)
        assert len(teach(page, samples, {**SETTINGS, "epochs": 5})["history"]) == 5
        saved = page.evaluate("(o) => belka.save(o)", {"name": "colours-tiny", "replace": True})
        assert saved["status"] == 201, saved
        check_against_the_server(page, server, samples, "colours-tiny", size=32, learned=False)
    finally:
        page.context.close()


def test_saving_needs_the_token_when_the_server_has_one(browser, tmp_path, small_mobilenet, samples):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(small_mobilenet["dir"], models / BASE)
    with serve(models, BELKA_ADMIN_TOKEN="s3cret") as url:
        page = new_page(browser)
        page.set_default_timeout(300_000)
        try:
            page.goto(f"{url}/teach?backend=wasm")
            assert page.evaluate("belka.ready")["ok"]
            assert page.locator("#token-row").is_visible()  # the page asks for it
            teach(page, samples)
            refused = page.evaluate("(o) => belka.save(o)", {"name": "colours", "token": ""})
            assert refused["status"] == 401
            assert "Not saved (401)" in page.locator("#save-status").inner_text()
            wrong = page.evaluate("(o) => belka.save(o)", {"name": "colours", "token": "guess"})
            assert wrong["status"] == 403 and not (models / "colours").exists()
        finally:
            page.context.close()


def test_pictures_and_head_survive_a_reload_and_clear_forgets_them(browser, server, samples):
    page = new_page(browser)
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{server}/teach?backend=wasm")
        assert page.evaluate("belka.ready")["ok"]
        teach(page, samples)
        probe = samples["bluish"]["held"][0]
        before = page.evaluate(PREDICT, probe)
        page.reload()
        assert page.evaluate("belka.ready")["ok"]
        assert page.evaluate("belka.classes()") == [{"name": n, "count": TRAIN} for n in COLOURS]
        assert "Restored 32 pictures" in page.locator("#samples-status").inner_text()
        after = page.evaluate(PREDICT, probe)  # the head came back too: no training needed
        np.testing.assert_allclose(after["logits"], before["logits"], rtol=0, atol=1e-6)
        assert page.locator("#teach-thumbs, .teach-thumb").count() == 2 * TRAIN

        page.click("#clear")
        page.evaluate("belka.idle()")
        assert page.evaluate("belka.stored()") is None
        page.reload()
        assert page.evaluate("belka.ready")["ok"]
        assert page.evaluate("belka.classes()") == [{"name": "squirrel", "count": 0}, {"name": "not squirrel", "count": 0}]
        assert "Train first" in page.locator("#try-status").inner_text()
        assert page.errors == []
    finally:
        page.context.close()


def test_the_camera_records_frames_into_a_class(browser, server):
    """Chromium's fake camera (a moving test pattern): holding a class's record button adds
    frames to it; the record API does what the button does, a given number of frames."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    fake = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
    try:
        page = new_page(fake, permissions=["camera"])
        page.set_default_timeout(300_000)
        page.goto(f"{server}/teach?backend=wasm")
        assert page.evaluate("belka.ready")["ok"]
        assert page.locator('[data-record="0"]').is_hidden()  # no camera, no record button
        assert page.evaluate("belka.startCamera()") == {"ok": True}
        assert page.locator('[data-record="0"]').is_visible()
        assert page.evaluate("belka.record(0, 4)") == 4
        button = page.locator('[data-record="1"]')
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.down()
        page.wait_for_timeout(1200)
        page.mouse.up()
        page.evaluate("belka.idle()")
        counts = [c["count"] for c in page.evaluate("belka.classes()")]
        assert counts[0] == 4 and counts[1] >= 2, counts
        # taught on those frames, the live camera goes through the new head
        page.evaluate("(s) => belka.train(s)", {**SETTINGS, "epochs": 5, "validationSplit": 0})
        assert page.locator("#try-live").is_visible()
        live = page.evaluate("belka.tryLive(3)")
        assert len(live["probabilities"]) == 2 and abs(sum(live["probabilities"]) - 1) < 1e-5
        assert page.locator("#try-status").inner_text().startswith("Live: looks like")
        page.evaluate("belka.stopCamera()")
        assert page.locator('[data-record="0"]').is_hidden() and page.locator("#try-live").is_hidden()
        assert page.errors == []
    finally:
        fake.close()


def test_augmented_views_train_but_never_validate(browser, server, samples):
    page = new_page(browser)
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{server}/teach?backend=wasm")
        assert page.evaluate("belka.ready")["ok"]
        # the worker's views: 4 of them, other features than the picture's, the same for the same seed
        views = page.evaluate("""async (b64) => {
          const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], {type: 'image/png'});
          const one = await belka.worker('features', {image: await createImageBitmap(blob), views: 4, seed: 3});
          const two = await belka.worker('features', {image: await createImageBitmap(blob), views: 4, seed: 3});
          return {own: Array.from(one.features), views: Array.from(one.views), again: Array.from(two.views)};
        }""", samples["reddish"]["train"][0])
        own, augmented = np.array(views["own"]), np.array(views["views"]).reshape(4, -1)
        assert augmented.shape == (4, own.size) and views["again"] == views["views"]
        assert all(np.abs(row - own).max() > 1e-3 for row in augmented)

        page.check("#augment")
        for index, name in enumerate(COLOURS):
            assert page.evaluate(ADD, [index, samples[name]["train"][:6]]) == 6
        result = page.evaluate("(s) => belka.train(s)", {**SETTINGS, "epochs": 10})
        assert len(result["split"]["val"]) == 4 and len(result["split"]["train"]) == 8
        assert result["trainingRows"] == 8 * (1 + 4)  # the validation pictures' views are left out
        before = page.evaluate("belka.numTensors()")
        page.evaluate("(s) => belka.train(s)", {**SETTINGS, "epochs": 2})
        assert page.evaluate("belka.numTensors()") == before  # a new head replaced the old one
    finally:
        page.context.close()
