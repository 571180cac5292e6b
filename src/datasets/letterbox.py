"""Darknet's letterbox: resize keeping the aspect ratio, centre on a canvas of a fill value.

Darknet evaluates and detects on letterboxed inputs (grey 0.5 fill on RGB/255
input); a network converted from Darknet weights needs the same input. Boxes
predicted on the canvas map back with :func:`unletterbox_boxes`.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np


def letterbox_geometry(image_hw: Sequence[int], out_hw: Sequence[int]) -> Tuple[float, Tuple[int, int], Tuple[int, int]]:
    """(scale, (new_w, new_h), (pad_x, pad_y)) of fitting ``image_hw`` into ``out_hw``."""
    height, width = int(image_hw[0]), int(image_hw[1])
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    scale = min(out_w / width, out_h / height)
    new_w = min(out_w, max(1, int(round(width * scale))))
    new_h = min(out_h, max(1, int(round(height * scale))))
    return scale, (new_w, new_h), ((out_w - new_w) // 2, (out_h - new_h) // 2)


def letterbox(image: np.ndarray, out_hw: Sequence[int], fill: float) -> Tuple[np.ndarray, float, Tuple[int, int]]:
    """``(H, W, C)`` float image -> ``(out_h, out_w, C)`` canvas of ``fill``; also (scale, pad).

    Bilinear resize, as Darknet's ``letterbox_image``.
    """
    scale, (new_w, new_h), (pad_x, pad_y) = letterbox_geometry(image.shape[:2], out_hw)
    resized = cv2.resize(np.asarray(image, np.float32), (new_w, new_h),
                         interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    canvas = np.full((int(out_hw[0]), int(out_hw[1]), image.shape[2]), fill, np.float32)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return canvas, scale, (pad_x, pad_y)


def unletterbox_boxes(boxes: np.ndarray, scale: float, pad: Sequence[int], image_w: float,
                      image_h: float) -> np.ndarray:
    """Corner boxes ``(n, 4)`` on the letterbox canvas -> the original image, clipped to it."""
    pad_x, pad_y = pad
    out = (np.asarray(boxes, np.float32) - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)) / scale
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, image_w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, image_h)
    return out


def decode_in_image(decode, outputs, image_w: float, image_h: float, input_hw: Sequence[int],
                    pre=None):
    """``decode`` (the model spec's) of one image's outputs, boxes in that image's pixels.

    With a letterboxed input (``pre.resize_mode == "letterbox"``) the boxes are
    decoded on the canvas and mapped back through the letterbox.
    """
    if pre is None or pre.resize_mode != "letterbox":
        return decode(outputs, float(image_w), float(image_h))
    from src.detections import Detections  # pylint: disable=import-outside-toplevel
    scale, _, pad = letterbox_geometry((image_h, image_w), input_hw)
    dets = decode(outputs, float(input_hw[1]), float(input_hw[0]))
    boxes = unletterbox_boxes(dets.boxes.reshape(-1, 4), scale, pad, float(image_w), float(image_h))
    return Detections(boxes, dets.scores, dets.classes)
