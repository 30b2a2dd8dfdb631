#!/usr/bin/env python3
"""`python scripts/convert.py ...` is `belka convert ...` (for when the console script is not on PATH)."""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
