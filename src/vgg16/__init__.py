"""VGG16 image classifier."""
from src.vgg16.net import VGG16, vgg16

__all__ = ["VGG16", "vgg16"]
