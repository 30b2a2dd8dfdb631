#!/usr/bin/env python3
"""`python scripts/convert.py ...` is `belka convert ...` (for when the console script is not on PATH)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
