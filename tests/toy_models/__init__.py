"""Two toy models registered from outside ``src`` (``ZOO_PLUGINS=tests/toy_models``).

They prove that a model needs only its own files: nothing in ``src`` names
them. ``toy_classifier`` uses everything the classification task offers;
``toy_detector`` brings what a detector must (targets, loss, deploy network,
output layout, decoding) plus a config section of its own (``toy_detector.*``).
"""
from src.config import Key
from src.registry import ModelSpec, Preprocessing, register_model

register_model(ModelSpec("toy_classifier", "classification",
                         builder="toy_models.nets:toy_classifier"))

register_model(ModelSpec(
    "toy_detector", "detection",
    builder="toy_models.nets:toy_detector",
    targets="toy_models.detector:targets",
    loss="toy_models.detector:loss_network",
    deploy="toy_models.detector:deploy_network",
    output_layout="toy_models.detector:output_layout",
    decode="toy_models.detector:decoder",
    preprocessing=Preprocessing(resize_mode="stretch"),
    config_section={"toy_detector": {
        "score_threshold": Key(0.01, "keep boxes scoring at least this"),
        "nms_iou": Key(0.5, "per-class NMS IoU threshold"),
    }},
    detect_defaults=(("toy_detector.score_threshold", 0.2),)))
