"""The README's picture (docs/screenshot.png), made from the running app: `belka serve` on a free
port, the classify page in headless Chromium on the wasm backend, a photo given to it, Grad-CAM
run from the "Where did it look?" card, and a screenshot of the page.

    .venv/bin/python scripts/screenshot.py [--models DIR] [--model NAME] [--photo FILE]
                                           [--out docs/screenshot.png] [--width 1280] [--height 1500]

The models folder is the server's default (BELKA_MODELS_DIR, else ./models) and the model the
page's default (BELKA_MODEL, else mobilenet-v2); the photo is scikit-image's cat (chelsea).
With ImageNet weights (`make run` with internet) the verdict is a real one; with untrained
weights the page says so, and so does the picture. Chromium is Debian's (/usr/bin/chromium,
or BELKA_CHROMIUM), driven by Playwright, as in the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from app.settings import default_models_dir
from harness.chromium import CHROMIUM
from harness.server import ServerDidNotStart, serve

REPO = Path(__file__).resolve().parent.parent


def default_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=92)
    return path


def save_small(png: bytes, out: Path) -> None:
    """The screenshot as a 256-colour PNG: a third of the bytes, and it still reads well."""
    import io

    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


@contextlib.contextmanager
def serve_or_exit(models: Path):
    """`belka serve` for ``models`` on a free port (harness.server.serve); exits with its log when
    it does not start."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(serve(models, seconds=120))
        except ServerDidNotStart as exc:
            sys.exit(f"screenshot: {exc}")
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: the server's)")
    parser.add_argument("--model", default=None, help="the classifier to show (default: the page's)")
    parser.add_argument("--photo", type=Path, default=None, help="the picture (default: scikit-image's cat)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    models = (args.models or default_models_dir()).resolve()
    if not models.is_dir():
        sys.exit(f"screenshot: no models folder at {models}: convert a model first (make run)")
    with tempfile.TemporaryDirectory() as scratch, serve_or_exit(models) as url:
        photo = args.photo or default_photo(Path(scratch))
        query = "?backend=wasm" + (f"&model={args.model}" if args.model else "")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height},
                                    device_scale_factor=1)
            page.set_default_timeout(180_000)
            page.goto(url + "/" + query)
            ready = page.evaluate("window.belka.ready")
            if not ready.get("ok"):
                sys.exit(f"screenshot: the page did not start: {ready}")
            page.set_input_files("#file-input", str(photo))
            page.evaluate("window.belka.idle()")
            page.click("#explain-run")
            page.evaluate("window.belka.idle()")
            page.wait_for_selector("#explain-figure:not([hidden])")
            page.evaluate("window.scrollTo(0, 0)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            picture = page.screenshot()
            browser.close()
        save_small(picture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
