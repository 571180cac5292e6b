"""Convert published Darknet / torchvision / timm weights into a zoo checkpoint.

    python convert_weights.py --source=darknet --model=yolov3_tiny \\
        --input=yolov3-tiny.weights --output=yolov3_tiny_darknet.ckpt
    python convert_weights.py --download=yolov3-tiny --output=yolov3_tiny_darknet.ckpt

Darknet files use the official cfg shipped in src/pretrained/cfg unless --cfg
names another. The checkpoint records the network options, config, class
names and preprocessing of its source (see src/pretrained/convert.py).
"""
import argparse
import sys

from src.cli import run_main
from src.pretrained import ConversionError
from src.pretrained.known_files import KNOWN_FILES
from src.pretrained.recipes import SOURCES


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConversionError(f"{message} (see python convert_weights.py --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--source", choices=SOURCES, help="framework of the input file")
    parser.add_argument("--model", help="zoo model: yolov3_tiny, tinydarknet, vgg16, mobilenetv1")
    parser.add_argument("--input", help="the source weights file")
    parser.add_argument("--output", required=True, help="checkpoint to write (.ckpt)")
    parser.add_argument("--cfg", help="Darknet .cfg (default: the official one of --model)")
    parser.add_argument("--labels", help="class labels in the source's output order, one per "
                        "line ('<label> [display name]'); default: the source's ImageNet/COCO "
                        "classes")
    parser.add_argument("--source_bn_eps", type=float, default=None,
                        help="BN epsilon the source computed with (default: Darknet/PyTorch "
                        "1e-5; OpenCV's Darknet importer uses 1e-6)")
    parser.add_argument("--download", choices=sorted(KNOWN_FILES),
                        help="fetch this published file (sha256-checked, cached), then convert")
    parser.add_argument("--cache_dir", default=None, help="download cache folder "
                        "(default $MS_ZOO_CACHE or ~/.cache/mindspore_model_zoo/pretrained)")
    parser.add_argument("--url", default=None, help="download from this URL instead of the "
                        "published one (a mirror)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from src.pretrained.convert import convert
    source, model, path = args.source, args.model, args.input
    if args.download:
        known = KNOWN_FILES[args.download]
        if (source or known.source) != known.source or (model or known.model) != known.model:
            raise ConversionError(f"--download={known.name} is {known.source} {known.model} "
                                  f"weights; drop --source/--model or make them match")
        if path:
            raise ConversionError("pass either --download or --input, not both")
        from src.pretrained.download import fetch
        source, model = known.source, known.model
        path = fetch(known, cache_dir=args.cache_dir, url=args.url)
    elif not (source and model and path):
        raise ConversionError("pass --source, --model and --input (or --download=<name>: "
                              + ", ".join(sorted(KNOWN_FILES)) + ")")
    convert(source, model, path, args.output, cfg_path=args.cfg, labels_path=args.labels,
            source_bn_eps=args.source_bn_eps)
    return 0


if __name__ == "__main__":
    run_main(main)
