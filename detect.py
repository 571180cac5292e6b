"""Detect objects with a zoo detector: draw boxes on images and write the detections as JSON.

    python detect.py --config_path=config/<detector>_coco.yaml --checkpoint_path=best.ckpt \\
        --input=photo.jpg --output=detections/
    python detect.py --model_file=<detector>_coco.mindir \\
        --input=images/ --output=detections/          # an exported MINDIR or ONNX file

Flags of this script (the rest are config keys):
  --input PATH        an image or a folder of images
  --output DIR        where the drawn images and detections.json go
  --model_file FILE   an exported .mindir/.onnx instead of --checkpoint_path (same image_size)

The config comes from ``--config_path``, else from the ``--model_file`` deploy
spec. The model's spec decodes the outputs and may set defaults of its own for
this script (YOLOv3-Tiny keeps boxes scoring at least 0.3 here, where evaluation
uses 0.001: ``--detection.score_threshold=0.5`` changes it). A classifier's
checkpoint or export is refused. Class names come from the evaluation annotation
file when the config names one, else the 80 COCO names. Files are written atomically.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import parse, run_main
from src.errors import ConfigError, DataError
from src.utils.io import atomic_path, atomic_write_text

USAGE = __doc__
from src.datasets.common import IMAGE_SUFFIXES as IMAGE_EXTENSIONS  # noqa: E402


def split_flags(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Take this script's own flags out of argv; the rest are config flags."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--input", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("--model_file", default="")
    return parser.parse_known_args(list(argv))


def input_images(path: str) -> List[str]:
    """The image file, or the image files of a folder (sorted)."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
        return files
    raise DataError(f"input {path!r} not found; pass --input=<image file or folder>")


def resolve_config(args, rest: Sequence[str]):
    """The config (``--config_path``, else the checkpoint's or the export's stored one) with the
    model's demo defaults.

    A classifier is refused here, before any work.
    """
    from src.registry import get_model_spec  # pylint: disable=import-outside-toplevel
    cfg = parse(rest, USAGE, entry="detect", model_file=args.model_file, announce=False)
    spec = get_model_spec(cfg.model)
    if spec.task != "detection":
        what = f"export {args.model_file!r}" if args.model_file else f"model {cfg.model!r}"
        raise ConfigError(f"detect.py needs a detection model, but {what} is a {spec.task} "
                          f"model ({cfg.model}); use eval.py or infer.py for it, or give a "
                          f"detector's --config_path / --model_file")
    return parse(rest, USAGE, program_defaults=spec.detect_defaults, entry="detect",
                 model_file=args.model_file)


def load_predictor(cfg, model_file: str):
    """``f(batch (N,3,H,W) float32) -> list of output arrays`` from a file or checkpoint."""
    from src.export import ExportedModel  # pylint: disable=import-outside-toplevel
    if model_file:
        return ExportedModel(model_file)
    if not cfg.checkpoint_path:
        raise ConfigError("no model given; pass --checkpoint_path=<file.ckpt> or "
                          "--model_file=<exported .mindir/.onnx>")
    import mindspore as ms  # pylint: disable=import-outside-toplevel

    from src import checkpoint as ckpt  # pylint: disable=import-outside-toplevel
    from src.device import setup_device  # pylint: disable=import-outside-toplevel
    from src.engine import build_network  # pylint: disable=import-outside-toplevel
    from src.registry import get_model_spec, list_models  # pylint: disable=C0415
    from src.tasks import get_task  # pylint: disable=import-outside-toplevel

    setup_device(cfg.device_target, cfg.device_id, cfg.mode)
    source = f"checkpoint {cfg.checkpoint_path}"
    tensors, meta = ckpt.read_checkpoint(cfg.checkpoint_path)
    stored = meta.get("model")
    if stored in list_models() and get_model_spec(stored).task != "detection":
        raise ConfigError(f"detect.py needs a detection model, but {source} holds {stored} "
                          f"(a {get_model_spec(stored).task} model); use eval.py for it")
    ckpt.check_checkpoint_matches(cfg, meta, source, check_dataset=False)
    net = build_network(cfg)
    ckpt.load_network_weights(net, tensors, source=source)
    infer = get_task("detection").export_network(cfg, net)
    infer.set_train(False)

    def predict(batch):
        outputs = infer(ms.Tensor(batch))
        return [o.asnumpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
    return predict


def class_color(class_index: int) -> Tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hue steps)."""
    import colorsys  # pylint: disable=import-outside-toplevel
    r, g, b = colorsys.hsv_to_rgb((class_index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: np.ndarray, dets, names: Sequence[str]) -> Image.Image:
    """The image with one labelled rectangle per detection."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    line = max(1, round(min(canvas.size) / 200))
    for (x1, y1, x2, y2), score, cls in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                            dets.classes.tolist()):
        color = class_color(cls)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line)
        label = f"{names[cls]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        # Label above the box when there is room, inside it otherwise.
        shift = (bottom - top + 2) if y1 - (bottom - top + 2) >= 0 else 0
        draw.rectangle([left, top - shift, right + 2, bottom - shift], fill=color)
        draw.text((x1 + 1, y1 - shift), label, fill=(0, 0, 0), font=font)
    return canvas


def save_image_atomically(image: Image.Image, path: str) -> None:
    """Write an image in the format its extension names, atomically."""
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)


def detection_records(dets, names: Sequence[str], category_ids: Sequence[int]) -> List[Dict]:
    """JSON-ready detections: bbox as [x, y, w, h] pixels, score, class name and id."""
    return [{"bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
             "score": round(float(score), 4), "class": names[cls],
             "category_id": int(category_ids[cls])}
            for (x1, y1, x2, y2), score, cls in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                                    dets.classes.tolist())]


def main(argv) -> int:
    args, rest = split_flags(argv)
    cfg = resolve_config(args, rest)
    if not args.output:
        raise ConfigError("no output folder; pass --output=<folder>")
    files = input_images(args.input)
    # Loaded after the flags are checked: these bring in MindSpore.
    from src.datasets.coco import (  # pylint: disable=import-outside-toplevel
        class_catalog, preprocess_for_inference, read_rgb)
    from src.datasets.letterbox import decode_in_image  # pylint: disable=C0415
    from src.preprocessing import describe, eval_preprocessing  # pylint: disable=C0415
    from src.registry import get_model_spec  # pylint: disable=import-outside-toplevel

    predict = load_predictor(cfg, args.model_file)
    names, category_ids = class_catalog(cfg)
    decode = get_model_spec(cfg.model).decode(cfg)
    pre = eval_preprocessing(cfg)
    print(describe(pre, cfg.image_size), flush=True)
    results = []
    for path in files:
        image = read_rgb(path)
        height, width = image.shape[:2]
        batch = preprocess_for_inference(image, cfg.image_size, pre)[None]
        try:
            outputs = predict(batch)
        except Exception as exc:  # MindSpore / onnxruntime raise their own types
            raise ConfigError(f"the model could not run a {cfg.image_size[0]}x{cfg.image_size[1]} "
                              f"input ({str(exc).splitlines()[0]}); pass the --image_size it was "
                              f"exported with") from None
        dets = decode_in_image(decode, [o[0] for o in outputs], width, height, cfg.image_size, pre)
        name = os.path.basename(path)
        save_image_atomically(draw_detections(image, dets, names), os.path.join(args.output, name))
        records = detection_records(dets, names, category_ids)
        results.append({"file": name, "width": width, "height": height, "detections": records})
        summary = ", ".join(f"{r['class']} {r['score']:.2f}" for r in records[:5])
        print(f"{name}: {len(records)} object(s){': ' + summary if summary else ''}"
              f"{' ...' if len(records) > 5 else ''}", flush=True)
    out_json = os.path.join(args.output, "detections.json")
    atomic_write_text(out_json, json.dumps(results, indent=1))
    print(f"{len(files)} image(s) with boxes and {out_json} written to {args.output}")
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
