"""Writes tests/durations.json, the seconds each test file took in a measured run, from which
tests/conftest.py shares the files out between the pytest workers.

    .venv/bin/python -m pytest -n 2 --dist loadgroup --junitxml=/tmp/junit.xml
    .venv/bin/python scripts/test_durations.py /tmp/junit.xml

A file's time is the sum of its tests' (set-up, call and tear-down: what its worker spends on it).
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "durations.json"


def file_of(classname: str) -> str | None:
    """"tests.api.test_predict" or "tests.api.test_predict.TestX" -> "tests/api/test_predict.py"."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = Path(*parts[:end]).with_suffix(".py")
        if (ROOT / path).is_file():
            return path.as_posix()
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    seconds: dict[str, float] = {}
    for case in ET.parse(argv[0]).getroot().iter("testcase"):
        name = file_of(case.get("classname", ""))
        if name:
            seconds[name] = seconds.get(name, 0.0) + float(case.get("time", 0))
    OUT.write_text(json.dumps({k: round(v, 1) for k, v in sorted(seconds.items())}, indent=1) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {len(seconds)} files, {sum(seconds.values()) / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
