"""MobileNetV1 image classifier."""
from src.mobilenetv1.net import MobileNetV1, mobilenetv1

__all__ = ["MobileNetV1", "mobilenetv1"]
