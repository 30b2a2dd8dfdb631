"""The `belka` command: convert models, verify them, serve the app.

Exit codes: 0 success, 1 unexpected error (a bug in Belka or TensorFlow: one line
says what failed; BELKA_DEBUG=1 prints the traceback too), 2 bad input (nothing
written), 3 verification failed (nothing written), 4 pretrained weights could
not be downloaded (nothing written), 130/143 interrupted (nothing written).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from app.convert.errors import BadInput, BelkaError, PortInUse

SERVE_EXIT_CODES_HELP = ("exit codes: 0 stopped (Ctrl-C), 1 unexpected error, 2 bad --host, --port, "
                         "--models or Ray option, or Ray not installed (checked before anything loads), "
                         "5 the port is in use")
EXIT_CODES_HELP = ("exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 verification failed, "
                   "4 download failed; nothing is written unless the exit code is 0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the (sub)command that was given them, with its own usage line
        args.parser_.error(f"unrecognized arguments: {' '.join(extra)}{_did_you_mean(args.parser_, extra)}")
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    if args.command == "convert":
        from app import tf_runtime

        tf_runtime.conversion_process()
    try:
        return args.handler(args)
    except BelkaError as exc:
        return _fail(args, exc.exit_code, type(exc).__name__, str(exc))
    except KeyboardInterrupt:
        return _fail(args, 130, "Interrupted", "interrupted; nothing was written")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        if os.environ.get("BELKA_DEBUG"):
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:400]
        return _fail(args, 1, "UnexpectedError",
                     f"unexpected {type(exc).__name__}: {detail} (nothing was written; this is a bug in Belka "
                     "or a library it uses: rerun with BELKA_DEBUG=1 for the traceback and report it)")


def _interrupted(signum, frame):
    # Unwinds through the `finally`/`except` blocks that remove staging folders; recorded, so a
    # conversion step that swallowed it raises it again (app/convert/progress.py).
    from app.convert.progress import interrupt

    interrupt(SystemExit(143) if signum == signal.SIGTERM else KeyboardInterrupt())


def _fail(args, code: int, kind: str, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": kind, "message": message, "exit_code": code}}))
    print(f"belka: error: {message}", file=sys.stderr)
    return code


def _did_you_mean(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """" (did you mean --alpha?)" for a misspelled option, else ""."""
    known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    guesses = [difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6) for word in extra
               if word.startswith("--")]
    found = [g[0] for g in guesses if g]
    return f" (did you mean {', '.join(found)}?)" if found else ""


def _name_parsers(parser: argparse.ArgumentParser) -> None:
    """Every parser records itself in ``args.parser_`` (the deepest one given wins), so an
    unknown option is reported with the usage of the command it was given to."""
    parser.set_defaults(parser_=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _name_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="belka", description="Belka: ML models in the browser, "
                                     "checked against Python.", epilog=EXIT_CODES_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser("convert", help="convert a model for the browser and the server",
                                  epilog=EXIT_CODES_HELP)
    sources = convert.add_subparsers(dest="source", required=True, metavar="SOURCE")

    mobilenet = sources.add_parser("mobilenet-v2", help="Keras MobileNetV2 for ImageNet (1000 classes)",
                                   epilog=EXIT_CODES_HELP)
    mobilenet.add_argument("--weights", default="imagenet", metavar="imagenet|none|FILE",
                           help="imagenet: Keras's pretrained download (needs the internet once); "
                                "none: untrained, seeded, non-degenerate; FILE: a Keras weights file "
                                "(default: imagenet)")
    mobilenet.add_argument("--alpha", type=float, default=1.0, choices=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
                           help="width multiplier (default 1.0)")
    mobilenet.add_argument("--size", type=int, default=224, choices=(96, 128, 160, 192, 224),
                           help="input height and width in pixels (default 224)")
    mobilenet.add_argument("--seed", type=int, default=0, help="seed for --weights none (default 0)")
    _common_convert_args(mobilenet)
    mobilenet.set_defaults(handler=_convert_mobilenet)

    keras = sources.add_parser("keras", help="your own Keras image classifier (.keras or .h5)",
                               epilog=EXIT_CODES_HELP)
    keras.add_argument("file", type=Path, help="the model file (.keras or .h5, Keras 2 or 3)")
    _user_model_args(keras)
    keras.set_defaults(handler=_convert_keras)

    app_parser = sources.add_parser(
        "keras-app", help="an ImageNet classifier from keras.applications by name (EfficientNetB0, "
        "MobileNetV3Small, ResNet50, DenseNet121, ConvNeXtTiny...)", epilog=EXIT_CODES_HELP)
    app_parser.add_argument("application", metavar="NAME",
                            help="the keras.applications name, e.g. EfficientNetB0 (case-insensitive)")
    app_parser.add_argument("--weights", default="imagenet", metavar="imagenet|none|FILE",
                            help="imagenet: Keras's pretrained download (needs the internet once); none: "
                                 "untrained, seeded, non-degenerate; FILE: a Keras weights file (default imagenet)")
    app_parser.add_argument("--size", type=int, default=None,
                            help="input height and width (default: the model's own, e.g. 224; other sizes "
                                 "only with --weights none or a matching FILE)")
    app_parser.add_argument("--seed", type=int, default=0, help="seed for --weights none (default 0)")
    _common_convert_args(app_parser)
    app_parser.set_defaults(handler=_convert_keras_app)

    saved = sources.add_parser("saved-model", help="your own TensorFlow SavedModel image classifier",
                               epilog=EXIT_CODES_HELP)
    saved.add_argument("folder", type=Path, help="the SavedModel folder (with saved_model.pb)")
    _user_model_args(saved, formats="graph,saved")
    saved.set_defaults(handler=_convert_saved_model)

    onnx = sources.add_parser("onnx", help="your own ONNX image classifier (a PyTorch export: torch.onnx.export)",
                              epilog=EXIT_CODES_HELP)
    onnx.add_argument("file", type=Path, help="the .onnx file (a model.onnx.data file beside it, if any)")
    onnx.add_argument("--labels", type=Path, required=True,
                      help="class names: .txt (one per line) or .json (list, or {index: name})")
    onnx.add_argument("--preprocessing", choices=("torch", "tf", "raw", "caffe"), default=None,
                      help="what the model expects pixels to become: torch (0..1, then ImageNet mean/std: "
                           "torchvision's and timm's; the default for an NCHW model), tf (-1..1; the default "
                           "for NHWC), raw (0..255), caffe (BGR, 0..255 minus the ImageNet mean)")
    onnx.add_argument("--size", type=_size, default=None, metavar="HxW",
                      help="the input size, only for a model whose graph leaves it open (e.g. 224x224)")
    onnx.add_argument("--crop", choices=("center", "none"), default="center",
                      help="center: crop the largest centred square first; none: squash (default center)")
    _common_convert_args(onnx, formats="onnx")
    onnx.set_defaults(handler=_convert_onnx)

    ssd = sources.add_parser("coco-ssd", help="an SSD object detector: the TF model zoo's COCO SSD MobileNet V2, "
                             "or your own TF Object Detection API SavedModel", epilog=EXIT_CODES_HELP)
    ssd.add_argument("--source", default="zoo", metavar="zoo|DIR|FILE",
                     help="zoo: download ssd_mobilenet_v2_320x320_coco17 from the TF model zoo (needs the "
                          "internet once); DIR: an Object Detection API SavedModel folder; FILE: a TF1 "
                          "Object Detection API frozen graph .pb (default zoo)")
    ssd.add_argument("--size", type=_size, default=None, metavar="HxW",
                     help="the detector's input size, only for a model that fixes none itself (Belka "
                          "reads it from the graph or the pipeline.config next to it)")
    ssd.add_argument("--labels", type=Path, default=None,
                     help="class names, one per score column after the background (default: COCO's, "
                          "by id 1..90)")
    _common_convert_args(ssd, formats="graph,saved")
    ssd.set_defaults(handler=_convert_coco_ssd)

    verify = commands.add_parser("verify", help="re-check a converted model: file hashes, then TF.js "
                                 "against TensorFlow on the probe batch", epilog=EXIT_CODES_HELP)
    verify.add_argument("model_dir", type=Path, help="e.g. models/mobilenet-v2")
    verify.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    verify.set_defaults(handler=_verify)

    site = commands.add_parser("export-site", help="write the pages and models as a static site, for any "
                               "static host or CDN", epilog="exit codes: 0 ok, 1 unexpected error, 2 bad input "
                               "(nothing is written unless the exit code is 0)")
    site.add_argument("out", type=Path, metavar="DIR", help="the folder to write (new, empty, or an earlier export)")
    site.add_argument("--models", type=_csv, default=None, metavar="A,B",
                      help="the models to include (default: every model a page can run: a TF.js graph model or an ONNX one)")
    site.add_argument("--base-path", default="/", help="where the site will be served, e.g. /demo/ (default /)")
    site.add_argument("--models-dir", type=Path, default=None,
                      help="models folder (default: BELKA_MODELS_DIR, else models/ here)")
    site.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    site.set_defaults(handler=_export_site)

    serve = commands.add_parser("serve", help="start the web app", epilog=SERVE_EXIT_CODES_HELP)
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (BELKA_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (BELKA_PORT)")
    serve.add_argument("--models", type=Path, default=None,
                       help="models folder (default: BELKA_MODELS_DIR, else models/ here; where `belka convert` writes)")
    serve.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                       help="uvicorn: one process (default); ray: the API on Ray Serve, each model a deployment "
                            "with Ray's batching and replicas (pip install -e '.[ray]'; docs/ray.md)")
    serve.add_argument("--replicas", type=int, default=None, help="ray: replicas per model (default 1)")
    serve.add_argument("--autoscale", default=None, metavar="MIN,MAX",
                       help="ray: let Ray scale each model between MIN and MAX replicas on the requests in flight")
    serve.add_argument("--replica-cpus", type=float, default=None,
                       help="ray: CPUs Ray reserves for each model replica when placing it (default 1)")
    serve.add_argument("--address", default=None,
                       help="ray: an existing cluster, e.g. ray://head:10001 (default: a local Ray instance)")
    serve.set_defaults(handler=_serve)
    _name_parsers(parser)
    return parser


def _common_convert_args(p: argparse.ArgumentParser, formats: str = "graph,layers,saved") -> None:
    p.add_argument("--quantize", default="none", choices=("none", "float16", "uint8"),
                   help="weight quantization of the TF.js models (default none)")
    p.add_argument("--formats", default=formats, type=_csv,
                   help=f"comma-separated formats to write (default {formats})")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: BELKA_MODELS_DIR, else models/ here; what `belka serve` serves)")
    p.add_argument("--name", default=None, help="model folder name (default derived from the source)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _user_model_args(p: argparse.ArgumentParser, formats: str = "graph,layers,saved") -> None:
    p.add_argument("--labels", type=Path, required=True,
                   help="class names: .txt (one per line) or .json (list, or {index: name})")
    p.add_argument("--value-range", type=_value_range, default=(0.0, 1.0), metavar="LO,HI",
                   help="what the model expects pixels 0..255 to become, e.g. 0,1 or -1,1 (default 0,1)")
    p.add_argument("--preprocessing", choices=("tf", "torch", "caffe", "raw"), default=None,
                   help="what your model's keras.applications preprocess_input does, instead of "
                        "--value-range: tf (-1..1), torch (0..1, ImageNet mean/std), caffe (BGR, "
                        "0..255 minus the ImageNet mean), raw (0..255)")
    p.add_argument("--crop", choices=("center", "none"), default="center",
                   help="center: crop the largest centred square first; none: squash (default center)")
    _common_convert_args(p, formats)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _value_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI such as 0,1 or -1,1, got {text!r}") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"LO must be smaller than HI, got {text!r}")
    return lo, hi


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 300x300, got {text!r}") from None
    if not (16 <= height <= 2048 and 16 <= width <= 2048):
        raise argparse.ArgumentTypeError(f"height and width must be from 16 to 2048 pixels, got {text!r}")
    return height, width


def _run_conversion(args, source_kind: str, default_name: str, load) -> int:
    from app.convert import pipeline
    from app.convert.progress import Progress
    from app.convert.request import Request

    from app.settings import default_models_dir

    request = Request(name=args.name or default_name, out=args.out or default_models_dir(),
                      formats=args.formats, quantize=args.quantize)
    result = pipeline.convert(load, request, source_kind,
                              Progress(pipeline.step_count(source_kind), enabled=not args.quiet))
    if args.json:
        print(json.dumps(result, indent=2))
    if not args.quiet:
        total = sum(result["bytes"].values())
        print(f"Wrote {result['path']} ({total / 1e6:.1f} MB) in {result['seconds']:.1f} s", file=sys.stderr)
        if not result["weights"].get("trained", True):
            print("WARNING: the weights are UNTRAINED (--weights none): predictions are meaningless.",
                  file=sys.stderr)
    return 0


def _convert_mobilenet(args) -> int:
    from app.convert import sources

    name = "mobilenet-v2" if (args.alpha, args.size) == (1.0, 224) else f"mobilenet-v2-{args.alpha:g}-{args.size}"
    if args.quantize != "none":
        name += f"-{args.quantize}"
    _check_weights(args.weights)
    return _run_conversion(args, "mobilenet-v2", name,
                           lambda: sources.mobilenet_v2(args.alpha, args.size, args.weights, args.seed))


def _check_weights(weights: str) -> None:
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise BadInput(f"--weights {weights}: no such file (use imagenet, none or a weights file)")


def _convert_keras(args) -> int:
    from app.convert import sources

    return _run_conversion(args, "keras", _default_name(args.file, args.quantize),
                           lambda: sources.keras_file(args.file, args.labels, args.value_range, args.crop,
                                                      args.preprocessing))


def _convert_saved_model(args) -> int:
    from app.convert import sources

    return _run_conversion(args, "saved-model", _default_name(args.folder, args.quantize),
                           lambda: sources.saved_model(args.folder, args.labels, args.value_range, args.crop,
                                                       args.preprocessing))


def _convert_onnx(args) -> int:
    from app.convert import onnx_source

    return _run_conversion(args, "onnx", _default_name(args.file, args.quantize),
                           lambda: onnx_source.load(args.file, args.labels, args.preprocessing, args.size, args.crop))


def _convert_keras_app(args) -> int:
    from app.convert import applications, sources

    name = applications.lookup(args.application).lower()
    if args.size and args.size != applications.APPLICATIONS[applications.lookup(args.application)][1]:
        name += f"-{args.size}"
    if args.quantize != "none":
        name += f"-{args.quantize}"
    _check_weights(args.weights)
    return _run_conversion(args, "keras-app", name,
                           lambda: sources.keras_application(args.application, args.size, args.weights, args.seed))


def _convert_coco_ssd(args) -> int:
    from app.convert import detector

    name = "coco-ssd" if args.source == "zoo" else _default_name(Path(args.source), "none")
    if args.quantize != "none":
        name += f"-{args.quantize}"
    return _run_conversion(args, "coco-ssd", name, lambda: detector.load_source(args.source, args.size, args.labels))


def _default_name(path: Path, quantize: str) -> str:
    path = path.resolve()
    if path.name in ("saved_model", "model.onnx") and path.parent.name:  # DIR/saved_model, DIR/model.onnx: DIR names it
        path = path.parent
    name = path.name.split(".")[0] or "model"
    return name if quantize == "none" else f"{name}-{quantize}"


def _verify(args) -> int:
    from app.convert.recheck import verify_model_dir

    report = verify_model_dir(args.model_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    for fmt, r in report["formats"].items():
        if report.get("task") == "detection":
            from app.convert.verify import describe_detector_report

            print(f"OK {describe_detector_report(fmt, r)}", file=sys.stderr)
        else:
            print(f"{fmt}: OK, max |diff| {r['max_abs_diff']:.2e}, top-1 agreement {r['top1_agreement']:.0%}",
                  file=sys.stderr)
    print(f"{args.model_dir}: {report['files_checked']} files intact, TF.js matches TensorFlow",
          file=sys.stderr)
    return 0


def _export_site(args) -> int:
    from app.settings import default_models_dir
    from app.site import export_site

    summary = export_site(args.out, args.models_dir or default_models_dir(), list(args.models or []) or None,
                          args.base_path)
    if args.json:
        print(json.dumps(summary, indent=2))
    try_it = (f"python3 -m http.server 8080 --directory {args.out}, then http://127.0.0.1:8080/"
              if summary["base_path"] == "/" else
              f"serve it so that it is at {summary['base_path']} (README.md there says how)")
    print(f"Wrote the static site {args.out} ({summary['bytes'] / 1e6:.1f} MB, base path {summary['base_path']}): "
          f"{len(summary['pages'])} pages, models {', '.join(summary['models'])}. Try it: {try_it}. "
          f"The headers a host should send are in {args.out / '_headers'}.", file=sys.stderr)
    return 0


def _serve(args) -> int:
    """Checks the address, the port and the models folder before anything slow (exit 2, or 5
    for a port in use), says what it serves, then runs the app on the socket it bound."""
    from app.settings import Settings

    settings = Settings.from_env(host=args.host, port=args.port, models_dir=args.models)
    scale = _ray_scale(args)
    sock = _bind(settings.host, settings.port) if not args.address else None
    models = _models_to_serve(settings.models_dir)
    listing = ", ".join(f"{name} ({task})" for name, task in models) or "none yet (belka convert ...)"
    print(f"Belka on http://{settings.host}:{settings.port}/ serving {settings.models_dir.resolve()}: {listing}",
          file=sys.stderr)

    if args.engine == "ray":
        if sock is not None:
            sock.close()  # (checked free: Ray Serve's proxy binds it)
        return _serve_on_ray(args, settings, scale)

    import uvicorn

    from app.main import create_app

    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _ray_scale(args):
    """The Ray options checked (a BadInput, exit 2, for a bad one or one given without --engine ray)."""
    from app.ray_engine import Scale

    given = [flag for flag, value in (("--replicas", args.replicas), ("--autoscale", args.autoscale),
                                      ("--replica-cpus", args.replica_cpus), ("--address", args.address))
             if value is not None]
    if args.engine != "ray":
        if given:
            raise BadInput(f"{given[0]} is for --engine ray (the uvicorn engine is one process)")
        return None
    if args.replicas is not None and args.autoscale is not None:
        raise BadInput("--replicas and --autoscale: give one (a fixed count, or a range Ray scales within)")
    if args.replicas is not None and not 1 <= args.replicas <= 64:
        raise BadInput(f"--replicas {args.replicas}: a number from 1 to 64")
    autoscale = None
    if args.autoscale is not None:
        try:
            low, high = (int(part) for part in args.autoscale.split(","))
        except ValueError:
            raise BadInput(f"--autoscale {args.autoscale}: MIN,MAX, two whole numbers, e.g. 1,4") from None
        if not 0 <= low <= high or not 1 <= high <= 64:
            raise BadInput(f"--autoscale {args.autoscale}: 0 <= MIN <= MAX, and MAX from 1 to 64")
        autoscale = (low, high)
    cpus = 1.0 if args.replica_cpus is None else args.replica_cpus
    if not 0 <= cpus <= 64:
        raise BadInput(f"--replica-cpus {args.replica_cpus}: a number from 0 to 64")
    if args.address is not None and not args.address.strip():
        raise BadInput("--address: empty (leave it out for a local Ray instance)")
    try:
        import ray.serve  # noqa: F401 - checked before anything slow
    except ImportError:
        from app.ray_engine import INSTALL_HINT

        raise BadInput(INSTALL_HINT) from None
    return Scale(replicas=args.replicas or 1, autoscale=autoscale, replica_cpus=cpus)


def _serve_on_ray(args, settings, scale) -> int:
    """Runs until Ctrl-C or SIGTERM, then takes the deployments and the local Ray instance down (exit 0)."""
    from app import ray_engine

    ray_engine.run(settings, scale, args.address)
    print("Stopped: the Ray Serve deployments are deleted.", file=sys.stderr)
    return 0


def _bind(host: str, port: int):
    """A listening socket on host:port, or a BelkaError: 2 for an address or port that cannot
    be, 5 for a port another program holds."""
    import errno
    import socket

    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port}: a port is a number from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise BadInput(f"--host {host}: not an address this machine can listen on ({exc})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is in use (another belka serve?): stop it or pick "
                            "another with --port") from None
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _models_to_serve(models_dir: Path) -> list[tuple[str, str]]:
    """(name, task) of each model folder in ``models_dir`` (none when it does not exist yet);
    a BelkaError (2) when it exists but cannot be read."""
    if not models_dir.exists():
        return []
    if not models_dir.is_dir():
        raise BadInput(f"--models {models_dir}: not a folder")
    try:
        folders = sorted(p for p in models_dir.iterdir() if not p.name.startswith("."))
    except PermissionError as exc:
        raise BadInput(f"--models {models_dir}: cannot be read ({exc.strerror})") from None
    found = []
    for folder in folders:
        try:
            found.append((folder.name, json.loads((folder / "manifest.json").read_text()).get("task", "?")))
        except (OSError, ValueError, AttributeError):
            continue  # not a model folder (the server's registry says why, if it is one)
    return found


if __name__ == "__main__":
    sys.exit(main())
