"""YOLOv3-Tiny's training augmentation (the upstream recipe).

Random scale/aspect crop placed on a gray canvas, horizontal flip, HSV
jitter, then boxes clipped to the canvas. :class:`AugmentSettings` is the
per-sample transform the COCO training pipeline takes:
``settings(image, boxes, input_hw, rng) -> (image, boxes)``.
"""
import dataclasses
from typing import Sequence, Tuple

import cv2
import numpy as np

from src.errors import ConfigError

GRAY_FILL = 128                # canvas colour around the training crop (upstream)
FLIP_PROBABILITY = 0.5
TRAIN_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                        cv2.INTER_LANCZOS4)


def _between(rng, low: float, high: float) -> float:
    """Uniform in [low, high) or (high, low] (numpy's Generator.uniform refuses high < low)."""
    return low + (high - low) * rng.random()


def random_crop_on_canvas(image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int],
                          jitter: float, rng, scale_range: Sequence[float] = (0.25, 2.0)
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """Resize to a random scale and aspect, place at a random offset on a gray canvas.

    Aspect = image aspect x U(1-j, 1+j) / U(1-j, 1+j); the longer side is
    U(scale_range) times the canvas side (upstream: 0.25 to 2). The image may
    stick out of the canvas (cropped) or leave gray borders. Boxes are moved
    with it (not yet clipped).
    """
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    in_h, in_w = image.shape[:2]
    stretch = _between(rng, 1 - jitter, 1 + jitter) / _between(rng, 1 - jitter, 1 + jitter)
    aspect = (in_w / in_h) * stretch
    scale = _between(rng, *scale_range)
    if aspect < 1:
        new_h = max(1, int(scale * out_h))
        new_w = max(1, int(new_h * aspect))
    else:
        new_w = max(1, int(scale * out_w))
        new_h = max(1, int(new_w / aspect))
    dx = int(_between(rng, 0, out_w - new_w))
    dy = int(_between(rng, 0, out_h - new_h))
    interpolation = TRAIN_INTERPOLATIONS[int(rng.integers(len(TRAIN_INTERPOLATIONS)))]
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.full((out_h, out_w, 3), GRAY_FILL, np.uint8)
    # Intersection of the placed image with the canvas, in both coordinate frames.
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + new_w, out_w), min(dy + new_h, out_h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = resized[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]] * (new_w / in_w) + dx
    boxes[:, [1, 3]] = boxes[:, [1, 3]] * (new_h / in_h) + dy
    return canvas, boxes


def horizontal_flip(image: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror the image and its boxes left-right."""
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), boxes


def hsv_jitter(image: np.ndarray, hue: float, saturation: float, value: float, rng) -> np.ndarray:
    """Random hue shift (+-hue turns) and saturation/value factors (U(1, s) or its inverse)."""
    hue_shift = _between(rng, -hue, hue)
    sat = _between(rng, 1, saturation) if rng.random() < 0.5 else 1 / _between(rng, 1, saturation)
    val = _between(rng, 1, value) if rng.random() < 0.5 else 1 / _between(rng, 1, value)
    if hue_shift == 0 and sat == 1 and val == 1:
        return image
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift * 360.0, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * val, 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def clip_boxes(boxes: np.ndarray, out_hw: Sequence[int], max_boxes: int, rng) -> np.ndarray:
    """Clip boxes to the canvas, drop those 1 px or thinner, keep at most ``max_boxes`` (random)."""
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, out_hw[1])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, out_hw[0])
    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) > 1) & ((boxes[:, 3] - boxes[:, 1]) > 1)]
    if len(boxes) > max_boxes:
        boxes = boxes[rng.permutation(len(boxes))[:max_boxes]]
    return boxes


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation strengths (the ``detection.*`` keys)."""

    jitter: float = 0.3
    crop_scale: Tuple[float, float] = (0.25, 2.0)
    hue: float = 0.015
    saturation: float = 1.5
    value: float = 0.4
    max_boxes: int = 90

    @classmethod
    def from_config(cls, cfg) -> "AugmentSettings":
        """Settings from the config; ConfigError for an unusable crop_scale."""
        d = cfg.detection
        if len(d.crop_scale) != 2 or not 0 < d.crop_scale[0] <= d.crop_scale[1]:
            raise ConfigError(f"detection.crop_scale must be [min, max] with 0 < min <= max, "
                              f"got {list(d.crop_scale)}")
        return cls(jitter=d.jitter, crop_scale=tuple(d.crop_scale), hue=d.hue,
                   saturation=d.saturation, value=d.value, max_boxes=d.max_boxes)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int], rng
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """The augmentation of one training sample with these settings."""
        return augment(image, boxes, out_hw, self, rng)


def augment(image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int],
            settings: AugmentSettings, rng) -> Tuple[np.ndarray, np.ndarray]:
    """The full training augmentation of one image at input size ``out_hw``."""
    image, boxes = random_crop_on_canvas(image, boxes, out_hw, settings.jitter, rng,
                                         settings.crop_scale)
    if rng.random() < FLIP_PROBABILITY:
        image, boxes = horizontal_flip(image, boxes)
    image = hsv_jitter(image, settings.hue, settings.saturation, settings.value, rng)
    return image, clip_boxes(boxes, out_hw, settings.max_boxes, rng)
