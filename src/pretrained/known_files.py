"""The published weight files the converter knows, identified by sha256.

A sha256 is recorded only where it was verified; torchvision publishes the
first 8 hex digits of its files' sha256 in their names (``vgg16-397923af.pth``),
which is what is checked for it. Files without a known hash still download
and convert, with a note.
"""
import dataclasses
import hashlib
from typing import Dict, Optional

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class KnownFile:
    """One published weights file and what is known about it."""

    name: str            # --download=<name>
    source: str
    model: str
    file_name: str
    url: str
    published: str       # published accuracy with its evaluation settings
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    size: Optional[int] = None

    def matches(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256
        return bool(self.sha256_prefix) and digest.startswith(self.sha256_prefix)

    def verifiable(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)


KNOWN_FILES: Dict[str, KnownFile] = {f.name: f for f in (
    KnownFile(name="yolov3-tiny", source="darknet", model="yolov3_tiny",
              file_name="yolov3-tiny.weights",
              url="https://pjreddie.com/media/files/yolov3-tiny.weights",
              published="COCO test-dev mAP@0.5 33.1 at 416x416 letterbox (Darknet site)",
              sha256="dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
              size=35434956),
    KnownFile(name="tiny", source="darknet", model="tinydarknet", file_name="tiny.weights",
              url="https://pjreddie.com/media/files/tiny.weights",
              published="ImageNet top-1 58.7 %, top-5 81.7 % (Darknet site; 224 centre crop)"),
    KnownFile(name="vgg16", source="torchvision", model="vgg16", file_name="vgg16-397923af.pth",
              url="https://download.pytorch.org/models/vgg16-397923af.pth",
              published="ImageNet top-1 71.592 %, top-5 90.382 % (torchvision IMAGENET1K_V1; "
                        "resize 256, centre crop 224)",
              sha256_prefix="397923af"),
    KnownFile(name="mobilenetv1_100", source="timm", model="mobilenetv1",
              file_name="model.safetensors",
              url="https://huggingface.co/timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/"
                  "model.safetensors",
              published="ImageNet top-1 75.38 %, top-5 92.31 % at 224 (timm "
                        "mobilenetv1_100.ra4_e3600_r224_in1k; crop 0.875, bicubic)"),
)}


def sha256_of(path: str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identify(digest: str) -> Optional[KnownFile]:
    """The known file with this sha256, if any."""
    for known in KNOWN_FILES.values():
        if known.matches(digest):
            return known
    return None
