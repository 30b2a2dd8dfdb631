"""Belka's harness: what the tests, the benchmarks and the scripts share to build small models,
serve a models folder and drive Chromium. bench/ and scripts/ import it, never tests/; it raises
ordinary exceptions (tests/ turns them into test failures) and needs no pytest.

- server.py: ``free_port()``; ``serve(models_dir, port=None, **BELKA_env)``, a context manager
  that runs `python -m app.cli serve` on 127.0.0.1, waits until /healthz answers and yields its
  URL (``serve_process``: the URL and the process); ``run_server(cmd, port)`` for any other
  server; ``wait_until_serving``; ``ServerDidNotStart`` (with the server's log); ``belka_command()``.
- chromium.py: ``CHROMIUM`` (the browser), the flags (``BASE_ARGS``, ``SWIFTSHADER_ARGS``,
  ``ARGS``, ``FAKE_CAMERA_ARGS``, ``fake_camera_args(clip)``), TF.js's ``BACKENDS`` and
  ``SWIFTSHADER_BACKENDS``, ``args_for(backend)``, ``label(backend)``, ``launch(playwright)``.
- camera.py: the fake camera's clip of a moving white square (``clip_frame``, ``write_y4m``,
  ``write_clip``; ``SIZE``, ``CLIP``, ``SIDE``).
- models.py: the small models the tests build (``tiny_classifier``, ``build_tiny_keras``,
  ``build_small_detector``, ``SMALL_MOBILENET``) and ``convert``/``convert_built``: a conversion run
  once for the whole test run, both workers included, through a cache keyed by what it depends on.
- detectors.py: small SSD-style detectors exported like the TF Object Detection API.
"""
