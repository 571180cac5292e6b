"""MindSpore model zoo: Tiny-DarkNet, MobileNetV1, VGG16 and YOLOv3-Tiny.

Importing this package applies the CPU performance setup (see
:mod:`src.cpu_env`) before MindSpore is loaded, so entry points must import
``src`` before ``mindspore``.
"""
from src import cpu_env as _cpu_env

_cpu_env.apply()
