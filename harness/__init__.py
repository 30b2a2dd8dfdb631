"""Belka's harness: what the tests, the benchmarks and the scripts share to build small models,
serve a models folder and drive Chromium. bench/ and scripts/ import it, never tests/.

- detectors.py: small SSD-style detectors exported like the TF Object Detection API.
"""
