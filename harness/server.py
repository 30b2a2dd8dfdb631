"""A server in a subprocess on 127.0.0.1: a free port, `belka serve` on a models folder, and the
wait until it answers.

The tests, the benchmarks and the scripts start servers the same way: ``serve(models_dir)`` for
`belka serve` (yields its base URL), ``run_server(cmd, port)`` for any other command (yields a
``Server``: its URL and process). Both wait until ``/healthz`` (or ``path``) answers and raise
``ServerDidNotStart`` with the end of the server's log when it stops first or takes too long;
both always stop it. Nothing here needs pytest: tests/browser/conftest.py turns the exception
into a test failure.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent  # the repository: the servers' working folder
HOST = "127.0.0.1"


class ServerDidNotStart(RuntimeError):
    """The server stopped, or did not answer in time; the message ends with its log's last lines."""


class Server(NamedTuple):
    url: str  # http://127.0.0.1:PORT, no trailing slash
    proc: subprocess.Popen


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def belka_command() -> list[str]:
    """The `belka` script of this environment (as a user runs it), else `python -m app.cli`."""
    script = Path(sys.executable).parent / "belka"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def _tail(proc: subprocess.Popen, log: IO[bytes] | Path | None, chars: int = 2000) -> str:
    """The end of what the server wrote: its log file, or its stderr pipe."""
    try:
        if isinstance(log, Path):
            return log.read_text(errors="replace")[-chars:]
        if log is not None:
            log.seek(0)
            return log.read().decode(errors="replace")[-chars:]
        if proc.stderr is not None:
            text = proc.stderr.read()
            return (text.decode(errors="replace") if isinstance(text, bytes) else text)[-chars:]
    except (OSError, ValueError):
        pass
    return ""


def wait_until_serving(proc: subprocess.Popen, url: str, what: str = "the server", seconds: float = 60,
                       log: IO[bytes] | Path | None = None) -> None:
    """Waits until ``url`` answers. When ``proc`` ends first or ``seconds`` pass, kills it and raises
    ServerDidNotStart with the end of its output (``log``: the file it writes to; else its stderr
    pipe, when it has one)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                raise ServerDidNotStart(f"{what} did not start: {_tail(proc, log)}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen, seconds: float = 20) -> None:
    """SIGTERM, then SIGKILL when ``proc`` has not ended within ``seconds``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def run_server(cmd: list[str], port: int, *, env: dict | None = None, what: str = "the server",
               seconds: float = 120, path: str = "/healthz", log: Path | None = None, cwd: Path = ROOT,
               stop_seconds: float = 20) -> Iterator[Server]:
    """Runs ``cmd`` (a server on 127.0.0.1:``port``; ``env`` adds to this process's environment),
    waits until ``path`` answers, yields a Server and always stops it. Its output goes to ``log``
    (stdout and stderr), else stderr to a temporary file: never to a pipe nobody reads, which
    fills up and then blocks the server."""
    url = f"http://{HOST}:{port}"
    full_env = {**os.environ, **(env or {})}
    with contextlib.ExitStack() as stack:
        if log is not None:
            out = stack.enter_context(open(log, "wb"))
            proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
            tail: IO[bytes] | Path = log
        else:
            tail = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=tail)
        try:
            wait_until_serving(proc, url + path, what, seconds, tail)
            yield Server(url, proc)
        finally:
            stop(proc, stop_seconds)


def serve_command(port: int, *args: str) -> list[str]:
    """`python -m app.cli serve --host 127.0.0.1 --port PORT ARGS...`."""
    return [sys.executable, "-m", "app.cli", "serve", "--host", HOST, "--port", str(port), *map(str, args)]


@contextlib.contextmanager
def serve_process(models_dir: Path, port: int | None = None, *, args: tuple = (), seconds: float = 60,
                  log: Path | None = None, stop_seconds: float = 20, **env_vars: str) -> Iterator[Server]:
    """As ``serve``, yielding the Server (URL and process: for whoever measures the process)."""
    port = port or free_port()
    env = {"BELKA_MODELS_DIR": str(models_dir), **env_vars}
    with run_server(serve_command(port, *args), port, env=env, what="belka serve", seconds=seconds, log=log,
                    stop_seconds=stop_seconds) as server:
        yield server


@contextlib.contextmanager
def serve(models_dir: Path, port: int | None = None, *, args: tuple = (), seconds: float = 60,
          log: Path | None = None, **env_vars: str) -> Iterator[str]:
    """`belka serve` (``python -m app.cli serve``) on 127.0.0.1:``port`` (default: a free one) for
    ``models_dir``, extra BELKA_* settings as keyword arguments (``BELKA_MODEL="tiny"``) and extra
    command-line ``args`` (``("--engine", "ray")``); waits until /healthz answers (at most
    ``seconds``), yields its base URL and stops it afterwards."""
    with serve_process(models_dir, port, args=args, seconds=seconds, log=log, **env_vars) as server:
        yield server.url
