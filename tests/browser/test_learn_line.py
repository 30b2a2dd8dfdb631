"""/learn/line (issue 15): gradient descent in TF.js fits y = a x + b to the page's points, checked
against the server's exact least-squares answer (POST /api/learn/line) and numpy.polyfit; the page
says when the learning rate is too large, standardising x speeds descent up, clicks and drags
edit the points, and no tensor is left behind. On the wasm backend, one check on cpu."""
from __future__ import annotations

import numpy as np
import pytest

from tests.browser.conftest import READY_TIMEOUT_MS, new_page, save_screenshot, serve

SEEDED = {"a": 2, "b": -1, "noise": 0.5, "count": 40, "seed": 7, "xMin": -1, "xMax": 1}


@pytest.fixture(scope="module")
def line_server(tmp_path_factory):
    """The lesson needs no model: a server over an empty models folder (up in a second or two,
    where the shared `server` fixture first converts a MobileNet)."""
    with serve(tmp_path_factory.mktemp("no-models")) as url:
        yield url


def open_line(browser, url):
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    page.set_default_timeout(READY_TIMEOUT_MS)
    page.goto(url)
    # the page's module runs once TF.js is in (static/js/tf.js awaits it): then window.belka exists
    page.wait_for_function("() => window.belka !== undefined")
    return page, page.evaluate("window.belka.ready")


@pytest.fixture(scope="module")
def line_page(browser, line_server):
    page, ready = open_line(browser, line_server + "/learn/line?backend=wasm")
    assert ready == {"ok": True, "backend": "wasm"}, ready
    yield page
    assert page.errors == []
    page.context.close()


def generate(page, **overrides) -> dict:
    return page.evaluate("o => window.belka.generate(o)", {**SEEDED, **overrides})


def descend(page, optimizer: str, rate: float, steps: int, standardise: bool = False) -> dict:
    return page.evaluate("""async ([optimizer, rate, steps, standardise]) => {
      const b = window.belka;
      b.setOptimizer(optimizer);
      b.setLearningRate(rate);
      b.setStandardise(standardise);
      b.reset();
      return b.step(steps);
    }""", [optimizer, rate, steps, standardise])


def exact(page) -> dict:
    return page.evaluate("window.belka.exact()")


def test_helpers(line_page):
    """line-fit.js on its own: the seeded generator, the rate slider, divergence, and the valley's
    shape against numpy's eigenvalues."""
    got = line_page.evaluate("""async () => {
      const f = await import('/static/js/line-fit.js');
      const { seededRandom } = await import('/static/js/random.js');
      const random = seededRandom(42);
      const exactLine = f.generatePoints({a: 3, b: 1, noise: 0, count: 5, seed: 3, xMin: 0, xMax: 10});
      return {
        draws: [random(), random(), random()], again: seededRandom(42)(),
        normal: Array.from({length: 4000}, ((r) => () => f.gaussian(r))(seededRandom(5))),
        exactLine, slider: [f.sliderToRate(0), f.sliderToRate(1000), f.sliderToRate(600), f.rateToSlider(0.1)],
        diverged: [f.hasDiverged(NaN, 1), f.hasDiverged(Infinity, 1), f.hasDiverged(2e6, 1), f.hasDiverged(10, 1),
                   f.hasDiverged(500, 0)],
        valley: f.valleyShape([0, 10, 20, 50, 100]),
        window: f.surfaceWindow([0, 1, 2, 3], {a: 2, b: -1, loss: 0.1}, {a: 0, b: 0}),
        ticks: f.niceTicks(-1.2, 1.2, 5),
      };
    }""")
    assert got["draws"][0] == got["again"] and len(set(got["draws"])) == 3
    assert all(0 <= v < 1 for v in got["draws"])
    normal = np.array(got["normal"])
    assert abs(normal.mean()) < 0.06 and abs(normal.std() - 1) < 0.05
    x, y = np.array(got["exactLine"]["x"]), np.array(got["exactLine"]["y"])
    assert ((0 <= x) & (x <= 10)).all() and np.allclose(y, 3 * x + 1)
    assert got["slider"] == [1e-4, 10, 0.1, 600]
    assert got["diverged"] == [True, True, True, False, False]
    xs = np.array([0, 10, 20, 50, 100.0])
    hessian = 2 * np.array([[np.mean(xs ** 2), xs.mean()], [xs.mean(), 1]])
    eigen = np.linalg.eigvalsh(hessian)
    assert got["valley"]["maxRate"] == pytest.approx(2 / eigen[-1], rel=1e-9)
    assert got["valley"]["ratio"] == pytest.approx(eigen[-1] / eigen[0], rel=1e-6)
    w = got["window"]
    assert w["aMin"] < 0 < 2 < w["aMax"] and w["bMin"] < -1 < 0 < w["bMax"]
    assert got["ticks"] == [-1, -0.5, 0, 0.5, 1]


def test_seeded_points_are_the_same_each_time(line_page):
    first = generate(line_page)
    assert first == generate(line_page) == line_page.evaluate("window.belka.points()")
    assert first != generate(line_page, seed=8)
    x, y = np.array(first["x"]), np.array(first["y"])
    assert len(x) == 40 and x.min() >= -1 and x.max() <= 1
    a, b = np.polyfit(x, y, 1)
    assert abs(a - 2) < 0.5 and abs(b + 1) < 0.3
    assert 0.3 < np.std(y - (2 * x - 1)) < 0.7


@pytest.mark.parametrize(("optimizer", "rate"), [("adam", 0.05), ("momentum", 0.1)])
def test_descent_reaches_the_least_squares_line(line_page, optimizer, rate):
    points = generate(line_page)
    result = descend(line_page, optimizer, rate, 1500)
    answer = exact(line_page)
    x, y = np.array(points["x"]), np.array(points["y"])
    a, b = np.polyfit(x, y, 1)
    # the server's answer is numpy's
    assert answer["n"] == 40 and answer["method"] == "numpy.linalg.lstsq"
    assert answer["a"] == pytest.approx(a, abs=1e-9) and answer["b"] == pytest.approx(b, abs=1e-9)
    # descent in float32 reaches it
    assert not result["diverged"] and result["steps"] == 1500
    assert abs(result["a"] - answer["a"]) < 1e-3 and abs(result["b"] - answer["b"]) < 1e-3, (result, answer)
    assert abs(result["a"] - a) < 1e-3 and abs(result["b"] - b) < 1e-3
    # the page's loss is the mean squared error of its line, never below the least
    assert result["loss"] == pytest.approx(np.mean((result["a"] * x + result["b"] - y) ** 2), rel=1e-9)
    assert -1e-12 <= result["loss"] - answer["loss"] < 1e-6
    # and the page says so
    line_page.wait_for_selector("#exact-status.parity-ok")
    assert "within 0.001" in line_page.text_content("#exact-status")


def test_standardising_x_speeds_descent_up(line_page):
    generate(line_page, xMin=0, xMax=100)
    answer = exact(line_page)
    shape = line_page.evaluate("window.belka.state()")
    assert shape["standardise"] is False
    # raw x up to 100: SGD needs a rate under ~3e-4 not to explode, and then b hardly moves
    raw = descend(line_page, "sgd", 1e-4, 300)
    assert not raw["diverged"] and abs(raw["b"] - answer["b"]) > 0.5
    assert "Standardise x" in line_page.text_content("#what-happened")
    scaled = descend(line_page, "sgd", 0.3, 300, standardise=True)
    assert abs(scaled["a"] - answer["a"]) < 1e-3 and abs(scaled["b"] - answer["b"]) < 1e-3, (scaled, answer)
    line_page.evaluate("window.belka.setStandardise(false)")


def test_too_large_a_rate_explodes_and_says_so(line_page):
    generate(line_page, xMin=0, xMax=10)
    result = descend(line_page, "sgd", 10, 50)
    state = line_page.evaluate("window.belka.state()")
    assert result["diverged"] and state["diverged"] and result["steps"] < 50, result
    alert = line_page.locator("#line-alert")
    assert alert.is_visible()
    text = alert.text_content()
    assert "The loss exploded" in text and "learning rate is too large" in text, text
    assert "exploded" in line_page.text_content("#descent-status")
    assert "exploded" in line_page.text_content("#what-happened")
    assert line_page.is_disabled("#step") and line_page.is_disabled("#run")
    # no more steps until Reset
    assert line_page.evaluate("window.belka.step(5)")["steps"] == result["steps"]
    line_page.click("#reset")
    state = line_page.evaluate("window.belka.state()")
    assert not state["diverged"] and state["steps"] == 0 and state["a"] == 0 and state["b"] == 0
    assert not alert.is_visible() and line_page.is_enabled("#step")
    # a safe rate from the same start goes downhill
    safe = descend(line_page, "sgd", 0.01, 50)
    assert not safe["diverged"] and safe["loss"] < state["loss"] / 10, (safe, state)


def test_no_tensor_left_behind(line_page):
    generate(line_page)
    counts = line_page.evaluate("""async () => {
      const b = window.belka;
      const counts = {};
      for (const name of ['sgd', 'momentum', 'adam']) {
        b.setOptimizer(name);
        b.setLearningRate(0.05);
        b.reset();
        await b.step(1); // the optimizer's own state is made on its first step
        const before = b.numTensors();
        await b.step(50);
        b.setLearningRate(0.02); // SGD and momentum swap their rate tensor
        b.setStandardise(true); // the points' tensors are made again
        await b.step(50);
        b.setStandardise(false);
        await b.step(1);
        counts[name] = [before, b.numTensors()];
      }
      // new points (their tensors and loss surface made again): still the same count once stepped
      b.setOptimizer('sgd');
      await b.step(1);
      const before = b.numTensors();
      b.generate({seed: 11, count: 60});
      await b.step(1);
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))); // the surface is drawn
      counts.after = [before, b.numTensors()];
      return counts;
    }""")
    for name, (before, after) in counts.items():
        assert before == after, (name, counts)


def test_clicks_and_drags_edit_the_points(line_page):
    generate(line_page)
    before = exact(line_page)
    canvas = line_page.locator("#plot").bounding_box()
    # top left of the plot: x near -1, y near 2, far above the line y = 2x - 1
    line_page.mouse.click(canvas["x"] + canvas["width"] * 0.15, canvas["y"] + canvas["height"] * 0.12)
    points = line_page.evaluate("window.belka.points()")
    assert len(points["x"]) == 41
    assert points["x"][-1] < -0.5 and points["y"][-1] > 1
    after = exact(line_page)
    assert after["n"] == 41 and after["a"] < before["a"] - 0.05, (before, after)
    a, b = np.polyfit(points["x"], points["y"], 1)
    assert after["a"] == pytest.approx(a, abs=1e-9) and after["b"] == pytest.approx(b, abs=1e-9)
    line_page.wait_for_function("n => document.getElementById('point-count').textContent === n", arg="41 points")

    # drag it down to the bottom right
    start = line_page.evaluate("window.belka.pointPosition(40)")
    line_page.mouse.move(start["x"], start["y"])
    line_page.mouse.down()
    line_page.mouse.move(canvas["x"] + canvas["width"] * 0.8, canvas["y"] + canvas["height"] * 0.7, steps=5)
    line_page.mouse.up()
    moved = line_page.evaluate("window.belka.points()")
    assert len(moved["x"]) == 41 and moved["x"][40] > 0.3 and moved["y"][40] < points["y"][40] - 1
    assert moved["x"][:40] == points["x"][:40]
    assert exact(line_page)["a"] > after["a"]

    # shift-click deletes it; so does a right click
    spot = line_page.evaluate("window.belka.pointPosition(40)")
    line_page.keyboard.down("Shift")
    line_page.mouse.click(spot["x"], spot["y"])
    line_page.keyboard.up("Shift")
    assert len(line_page.evaluate("window.belka.points()")["x"]) == 40
    spot = line_page.evaluate("window.belka.pointPosition(0)")
    line_page.mouse.click(spot["x"], spot["y"], button="right")
    assert len(line_page.evaluate("window.belka.points()")["x"]) == 39
    assert exact(line_page)["n"] == 39


def test_the_servers_refusal_is_shown(line_page):
    line_page.evaluate("window.belka.setPoints([1], [2])")
    answer = exact(line_page)
    assert "send 2" in answer["error"], answer
    line_page.wait_for_function("() => document.getElementById('exact-status').textContent.includes('send 2')")
    line_page.evaluate("window.belka.setPoints([2, 2, 2], [1, 2, 3])")
    assert "same x" in exact(line_page)["error"]
    line_page.wait_for_selector("#exact-status.parity-bad")
    # the browser itself logs each refused request as a console error: those two, and no other
    refused = [e for e in line_page.errors if "status of 422" in e]
    assert len(refused) == 2, line_page.errors
    line_page.errors[:] = [e for e in line_page.errors if e not in refused]


def test_run_animates_and_looks_right(line_page):
    generate(line_page)
    line_page.evaluate("window.belka.setOptimizer('sgd'); window.belka.setLearningRate(0.3); window.belka.reset()")
    line_page.click("#run")
    line_page.wait_for_function("() => window.belka.state().steps >= 60")
    line_page.evaluate("window.belka.pause()")
    state = line_page.evaluate("window.belka.state()")
    assert not state["running"] and not state["diverged"]
    answer = exact(line_page)
    assert state["loss"] < 1.05 * answer["loss"]
    line_page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    # the three canvases are drawn: the surface's middle is a colour, not blank
    pixel = line_page.evaluate("""() => {
      const c = document.getElementById('surface');
      return Array.from(c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data);
    }""")
    assert pixel[3] == 255, pixel
    assert line_page.text_content("#val-steps") == str(state["steps"])
    save_screenshot(line_page, "learn-line")
    assert line_page.errors == []


def test_cpu_backend_too(browser, line_server):
    page, ready = open_line(browser, line_server + "/learn/line?backend=cpu")
    try:
        assert ready == {"ok": True, "backend": "cpu"}, ready
        generate(page)
        result = descend(page, "momentum", 0.1, 1000)
        answer = exact(page)
        assert abs(result["a"] - answer["a"]) < 1e-3 and abs(result["b"] - answer["b"]) < 1e-3, (result, answer)
        before = page.evaluate("window.belka.numTensors()")
        page.evaluate("window.belka.step(100)")
        assert page.evaluate("window.belka.numTensors()") == before
        assert page.text_content("[data-field='backend']") == "cpu"
        assert page.errors == []
    finally:
        page.context.close()
