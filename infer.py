"""Run an exported model (ONNX on onnxruntime, MINDIR on MindSpore) over a data folder.

    python infer.py --model_file=tinydarknet_imagenet.onnx --data_path=/data/imagenet/val
    python infer.py --model_file=mobilenetv1_cifar10.mindir --data_path=/data/cifar10 --output_path=run1

Writes ``result_Files/<image-stem>_<i>.bin`` and ``time_Result/test_perform_static.txt``
under --output_path, the same files as the C++ app (ascend310_infer/), so
``python postprocess.py`` scores either. The model's config comes from the
``<model_file>.json`` spec that export.py writes, or from --config_path.
"""
import sys

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import run_main
from src.deploy.runner import main

if __name__ == "__main__":
    run_main(main, sys.argv[1:])
