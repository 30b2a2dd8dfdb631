"""`belka serve` checks what it was given before loading anything, and says what it serves
(issue 13): a bad address, port or models folder is one line and exit 2, a port in use exit 5,
each within a second or two; convert and serve share one default models folder."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from harness.server import free_port
from tests.conftest import ROOT, run_belka


def serve_fails(*args, cwd=ROOT) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = run_belka("serve", *args, timeout=60, cwd=cwd)
    return proc.returncode, proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(("args", "says"), [
    (["--port", "80000"], "--port 80000: a port is a number from 1 to 65535"),
    (["--port", "0"], "--port 0: a port is a number from 1 to 65535"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: not an address this machine can listen on"),
])
def test_a_bad_address_or_port_is_one_line_and_exit_2(args, says):
    code, stderr, seconds = serve_fails(*args)
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and says in stderr, stderr
    assert "Traceback" not in stderr and seconds < 15  # before TensorFlow or any model loads


def test_a_models_path_that_is_a_file_is_exit_2(tmp_path):
    not_a_folder = tmp_path / "models.txt"
    not_a_folder.write_text("hello")
    code, stderr, _ = serve_fails("--port", str(free_port()), "--models", not_a_folder)
    assert code == 2 and f"--models {not_a_folder}: not a folder" in stderr, stderr


def test_a_port_in_use_is_exit_5():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr, seconds = serve_fails("--port", str(port))
    assert code == 5, stderr
    assert stderr.strip() == (f"belka: error: port {port} on 127.0.0.1 is in use (another belka serve?): "
                              "stop it or pick another with --port"), stderr
    assert seconds < 15


def test_serve_says_where_and_what_it_serves_from_the_default_folder(tmp_path):
    """No --models, no BELKA_MODELS_DIR: models/ in the current folder, where `belka convert`
    writes by default too (tests/convert/test_mobilenet.py checks that side)."""
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text(json.dumps({"task": "classification"}))
    (tmp_path / "models" / "notes").mkdir()  # not a model: not listed
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELKA_")}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    try:
        first = proc.stderr.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first == (f"Belka on http://127.0.0.1:{port}/ serving {(tmp_path / 'models').resolve()}: "
                     "tiny (classification)"), first


def test_a_misspelled_flag_gets_its_commands_usage_and_a_guess():
    proc = run_belka("convert", "mobilenet-v2", "--alpah", "0.35", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: belka convert mobilenet-v2 ")
    assert proc.stderr.strip().endswith(
        "belka convert mobilenet-v2: error: unrecognized arguments: --alpah 0.35 (did you mean --alpha?)")
    proc = run_belka("serve", "--prot", "8000", timeout=60)
    assert proc.returncode == 2 and "usage: belka serve " in proc.stderr and "did you mean --port?" in proc.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--replicas", "2"], "--replicas is for --engine ray (the uvicorn engine is one process)"),
    (["--address", "ray://head:10001"], "--address is for --engine ray"),
    (["--engine", "ray", "--replicas", "0"], "--replicas 0: a number from 1 to 64"),
    (["--engine", "ray", "--autoscale", "3,1"], "--autoscale 3,1: 0 <= MIN <= MAX, and MAX from 1 to 64"),
    (["--engine", "ray", "--autoscale", "two"], "--autoscale two: MIN,MAX, two whole numbers, e.g. 1,4"),
    (["--engine", "ray", "--replicas", "2", "--autoscale", "1,2"], "--replicas and --autoscale: give one"),
    (["--engine", "ray", "--replica-cpus", "-1"], "--replica-cpus -1.0: a number from 0 to 64"),
    (["--engine", "spark"], "argument --engine: invalid choice: 'spark'"),
])
def test_bad_ray_options_are_one_line_and_exit_2(args, says):
    code, stderr, seconds = serve_fails("--port", str(free_port()), *args)
    assert code == 2 and says in stderr, stderr
    assert "Traceback" not in stderr and seconds < 15  # before Ray or TensorFlow starts
