"""Prepare a dataset for the inference apps (ascend310_infer/, infer.py).

    python preprocess.py --model_file=mobilenetv1_cifar10.mindir --data_path=/data/cifar10
    python preprocess.py --model_file=tinydarknet_imagenet.mindir --data_path=/data/imagenet/val \\
        --label_file=imagenet_label.txt

CIFAR-10: writes preprocess_Result/images/cifar10_test_<i>.bin (float32 CHW
network inputs) and preprocess_Result/label.txt. ImageNet: writes the label
file (``<image-stem> <class-index>`` lines, class folders sorted). The model's
config comes from the ``<model_file>.json`` spec that export.py writes, or from
--config_path.
"""
import sys

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import run_main
from src.deploy.preprocess import main

if __name__ == "__main__":
    run_main(main, sys.argv[1:])
