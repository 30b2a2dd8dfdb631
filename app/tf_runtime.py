"""Import TensorFlow (and tensorflowjs) quietly, once.

TensorFlow prints a screenful of CUDA/oneDNN chatter to stderr on import, even on
machines without a GPU, and tensorflowjs prints an advert to stdout (which would
break `belka ... --json`). Worse, when sys.stdout is not a real file (pytest's
capture, a notebook) TF-DF, which tensorflowjs imports, tries to import IPython
to show its advert as HTML and crashes without it: TFDF_DISABLE_WELCOME_MESSAGE
turns that off. Everything in Belka imports TF, tf_keras and tensorflowjs
through here.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings


@contextlib.contextmanager
def _silenced_fds():
    """Silence C-level stdout/stderr (TF's C++ logging ignores Python's sys.stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


_imported = threading.Event()
_import_lock = threading.Lock()


def tensorflow():
    """Return the tensorflow module, imported without noise. Thread-safe: the first import takes
    seconds, and a second thread must not get the module while it is half initialised (a
    server's first requests, preprocessed on threads, would fail with "partially initialized
    module 'tensorflow'")."""
    if not _imported.is_set():
        with _import_lock:
            if not _imported.is_set():
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                with _silenced_fds():
                    import tensorflow  # noqa: F401
                    import absl.logging

                    absl.logging.set_verbosity(absl.logging.ERROR)
                    sys.modules["tensorflow"].get_logger().setLevel("ERROR")
                _imported.set()
    return sys.modules["tensorflow"]


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs with oneDNN: on by default on x86 CPUs with
    AVX-512 VNNI/BF16 or AMX, off with TF_ENABLE_ONEDNN_OPTS=0. It changes which ops Grappler
    fuses (app/convert/export.py write_graph_model)."""
    tensorflow()
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow build without it
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def conversion_process() -> None:
    """Called by a command that only converts (``belka convert``), before TensorFlow is imported:
    run this process's TensorFlow with oneDNN off, as the TF.js graph conversion needs it
    (app/convert/export.py write_graph_model), so the conversion runs here instead of in a child
    process that imports TensorFlow again (about 4 s less per model). A server keeps oneDNN.
    Does nothing once TensorFlow is imported or when TF_ENABLE_ONEDNN_OPTS is set."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def tf_keras():
    """Return legacy Keras 2 (tf_keras): the Keras whose JSON TF.js can load."""
    tensorflow()
    import tf_keras as keras2

    return keras2


def tensorflowjs():
    """Return the tensorflowjs module (which imports TF-DF and prints to stdout)."""
    tensorflow()
    if "tensorflowjs" not in sys.modules:
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        with _silenced_fds():
            import tensorflowjs  # noqa: F401
    return sys.modules["tensorflowjs"]


@contextlib.contextmanager
def quiet_stdout():
    """Send Python-level prints of the converters to stderr, keeping stdout for --json,
    and hide Keras's "HDF5 is legacy" warnings (TF.js needs exactly that format)."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


@contextlib.contextmanager
def quiet_native():
    """Hide TensorFlow's C++ log lines (grappler's "Starting new session"...) for one call.
    Failures still surface as Python exceptions."""
    with _silenced_fds():
        yield
