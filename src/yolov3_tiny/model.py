"""YOLOv3-Tiny as the zoo sees it: a COCO detector, its ``detection.*`` config section.

Shared code reaches every YOLO-specific part through this spec: the training
targets and loss (:mod:`.targets`, :mod:`.loss`), the deployable decoding
network and its output layout, the decoding + NMS of those outputs
(:mod:`.postprocess`), the plain-resize input, and upstream's progress line.
"""
from src.config import MAX_IMAGE_SIDE, MAX_STEPS, MIN_IMAGE_SIDE, Key
from src.registry import ModelSpec, Preprocessing, register_model
from src.utils.logging import format_duration

MAX_BOXES = 100000

CONFIG_SECTION = {
    "detection": {
        "anchors": Key([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]],
                       "anchor (w, h) pairs in input pixels", type=list),
        "anchor_masks": Key([[3, 4, 5], [0, 1, 2]],
                            "anchor indices per output (stride 32 first)", type=list),
        "max_boxes": Key(90, "boxes kept per image", low=1, high=MAX_BOXES),
        "assign_iou_threshold": Key(0.213, "anchors above this IoU with a box also predict it",
                                    low=0, high=1),
        "ignore_threshold": Key(0.7, "predictions above this IoU with any box get no no-object loss",
                                low=0, high=1),
        "coord_scale": Key(4.0, "GIoU box-loss weight", low=0, high=1000),
        "large_scale": Key(4.0, "weight of the stride-32 output's loss", low=0, high=1000),
        "label_smoothing": Key(0.0, "class target smoothing", low=0, high=0.999),
        "multi_scale": Key([], "training sizes to pick from (square); empty = image_size only",
                           type=list, item_type=int, low=MIN_IMAGE_SIDE, high=MAX_IMAGE_SIDE),
        "multi_scale_interval": Key(10, "batches between input-size changes", low=1,
                                    high=MAX_STEPS),
        "jitter": Key(0.3, "random aspect jitter of the training crop", low=0, high=0.99),
        "crop_scale": Key([0.25, 2.0], "random size range of the training crop, relative to "
                          "the input size [min, max]", type=list, item_type=float, low=0.01, high=100),
        "hue": Key(0.015, "HSV hue jitter", low=0, high=0.5),
        "saturation": Key(1.5, "HSV saturation jitter", low=0.01, high=100),
        "value": Key(0.4, "HSV value jitter", low=0.01, high=100),
        "nms_iou": Key(0.5, "NMS IoU threshold", low=0, high=1),
        "score_threshold": Key(0.001, "keep detections scoring at least this (0.001 for mAP)",
                               low=0, high=1),
        "multi_label": Key(True, "a box may be reported for several classes"),
        "multi_label_threshold": Key(0.15, "class probability needed for multi-label output",
                                     low=0, high=1),
        "max_detections": Key(100, "detections kept per image after NMS (COCO uses 100; 0 = all)",
                              low=0, high=MAX_BOXES),
    },
}


def training_sizes(cfg):
    """Multi-scale schedule: ``detection.multi_scale`` (square sizes), else ``image_size``."""
    if cfg.detection.multi_scale:
        sizes = [(int(s), int(s)) for s in cfg.detection.multi_scale]
    else:
        sizes = [(int(cfg.image_size[0]), int(cfg.image_size[1]))]
    return sizes, int(cfg.detection.multi_scale_interval)


def progress_line(epoch, step, steps, loss, lr, images_per_second, eta_epoch, eta_total):
    """Upstream's ``epoch[e], iter[i], loss:..., fps:... imgs/sec, lr:...`` (0-based, global)."""
    global_iter = (epoch - 1) * steps + step
    return (f"epoch[{epoch - 1}], iter[{global_iter}], loss:{loss:.6f}, "
            f"fps:{images_per_second:.2f} imgs/sec, lr:{lr:.8g} "
            f"(step {step}/{steps}, epoch ETA {format_duration(eta_epoch)}, "
            f"total ETA {format_duration(eta_total)})")


SPEC = register_model(ModelSpec(
    "yolov3_tiny", "detection",
    builder="src.yolov3_tiny.net:yolov3_tiny",
    input_multiple="src.yolov3_tiny.net:DOWNSAMPLE",
    targets="src.yolov3_tiny.targets:target_function",
    augmentation="src.yolov3_tiny.augment:AugmentSettings.from_config",
    loss="src.yolov3_tiny.loss:loss_network",
    deploy="src.yolov3_tiny.loss:inference_network",
    output_layout="src.yolov3_tiny.postprocess:output_layout",
    decode="src.yolov3_tiny.postprocess:decoder",
    preprocessing=Preprocessing(resize_mode="stretch"),
    training_sizes=training_sizes,
    progress_line=progress_line,
    config_section=CONFIG_SECTION,
    config_aliases={"nms_thresh": "detection.nms_iou",
                    "eval_ignore_threshold": "detection.score_threshold",
                    "resize_rate": "detection.multi_scale_interval"},
    title="YOLOv3-Tiny",
    upstream_flags={"label_smooth_factor": "detection.label_smoothing"},
    upstream_ckpt_interval_unit="steps",
    upstream_config_files={"default_config.yaml": "config/yolov3_tiny_coco.yaml",
                           "base_config.yaml": "config/yolov3_tiny_coco.yaml"},
    default_config="config/yolov3_tiny_coco.yaml",
    # The demo draws boxes worth looking at; evaluation keeps 0.001 for the mAP.
    detect_defaults=(("detection.score_threshold", 0.3),)))
