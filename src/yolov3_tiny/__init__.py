"""YOLOv3-Tiny object detector (network only)."""
from src.yolov3_tiny.net import YOLOv3Tiny, YOLOv3TinyBackbone, yolov3_tiny

__all__ = ["YOLOv3Tiny", "YOLOv3TinyBackbone", "yolov3_tiny"]
