"""Writes the sample photos the /learn pages offer (static/img/samples/): real photos from
scikit-image's data folder, all free of copyright restrictions (CC0 or public domain: each one's
source is in static/img/samples/README.md), scaled to at most 320 px and saved as JPEG.

    .venv/bin/python scripts/make_samples.py

Run once by us; the result is committed, so the pages need neither scikit-image nor a network.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "static" / "img" / "samples"
MAX_SIDE = 320
# file name -> (skimage.data function, what it shows, licence as scikit-image states it)
SAMPLES = {
    "cat": ("chelsea", "a cat (Chelsea)", "CC0, Stefan van der Walt"),
    "coffee": ("coffee", "a cup of coffee", "CC0, Rachel Michetti"),
    "astronaut": ("astronaut", "astronaut Eileen Collins", "public domain, NASA"),
    "rocket": ("rocket", "a SpaceX rocket on its pad", "public domain, SpaceX"),
    "camera": ("camera", "a person with a camera", "CC0, Lav Varshney"),
    "coins": ("coins", "Greek coins", "no known copyright restrictions"),
    "hubble": ("hubble_deep_field", "the Hubble deep field", "public domain, NASA"),
    "retina": ("retina", "a human retina", "CC0"),
    "gravel": ("gravel", "gravel", "CC0, CC0Textures"),
    "brick": ("brick", "a brick wall", "CC0, CC0Textures"),
    "grass": ("grass", "grass", "CC0, CC0Textures"),
}


def main() -> None:
    import skimage.data

    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    lines = ["# Sample photos", "",
             "From scikit-image's `skimage.data` (made by `scripts/make_samples.py`), scaled to at most "
             f"{MAX_SIDE} px. Sources and licences as scikit-image states them:", ""]
    for name, (function, what, licence) in SAMPLES.items():
        image = Image.fromarray(getattr(skimage.data, function)()).convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
        image.save(OUT / f"{name}.jpg", quality=88)
        index.append({"file": f"{name}.jpg", "title": what})
        lines.append(f"- `{name}.jpg`: {what} (`skimage.data.{function}`): {licence}.")
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
