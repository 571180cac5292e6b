"""MobileNetV1 as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's)."""
from src.registry import ModelSpec, register_model

SPEC = register_model(ModelSpec(
    "mobilenetv1", "classification", builder="src.mobilenetv1.net:mobilenetv1",
    title="MobileNetV1",
    upstream_config_files={"default_config.yaml": "config/mobilenetv1_cifar10.yaml",
                           "default_config_imagenet.yaml": "config/mobilenetv1_imagenet.yaml"}))
