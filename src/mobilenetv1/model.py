"""MobileNetV1 as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's)."""
from src.registry import ModelSpec, register_model

SPEC = register_model(ModelSpec("mobilenetv1", "classification", builder="src.mobilenetv1.net:mobilenetv1"))
