"""Belka: real ML models in the web page, checked against Python."""

__version__ = "0.1.0"
