"""Tiny-DarkNet as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's)."""
from src.registry import ModelSpec, register_model

SPEC = register_model(ModelSpec(
    "tinydarknet", "classification", builder="src.tinydarknet.net:tinydarknet",
    title="Tiny-DarkNet",
    # its upstream's lr_init is the peak rate (the others': the warmup start)
    upstream_flags={"lr_init": "lr.base_lr"},
    upstream_config_files={
        "imagenet_config.yaml": "config/tinydarknet_imagenet.yaml",
        "imagenet_config_gpu.yaml": "config/tinydarknet_imagenet.yaml",
        "cifar10_config.yaml": "config/tinydarknet_cifar10.yaml",
        "cifar10_config_gpu.yaml": "config/tinydarknet_cifar10.yaml"}))
