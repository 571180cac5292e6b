"""YOLOv3-Tiny maths on hand-made inputs: target assignment, GIoU, head decoding, loss.

Every expected number below is worked out by hand in the comments.
"""
import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore: CPU setup)
import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn  # noqa: E402

from src.config import load_config
from src.device import setup_device
from src.engine import build_network
from src.tasks import detection
from src.yolov3_tiny.loss import (GRID_SENSITIVITY, YoloInference, YoloLayerLoss, build_decoders,
                                  giou_xyxy)
from src.yolov3_tiny.postprocess import DetectionSettings, detect
from src.yolov3_tiny.targets import anchor_wh_iou, assign_targets, target_function

ANCHORS = [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
MASKS = [[3, 4, 5], [0, 1, 2]]


pytestmark = pytest.mark.usefixtures("pynative_cpu")


def assign(boxes, input_hw=(128, 128), num_classes=3, max_boxes=90, smoothing=0.0):
    return assign_targets(np.asarray(boxes, np.float32), input_hw, ANCHORS, MASKS, num_classes,
                          0.213, max_boxes, smoothing)


# ---------------------------------------------------------------- target assignment

def test_anchor_iou_by_size_only():
    # 20x43 box vs 23x27 anchor: overlap 20*27 = 540, union 860 + 621 - 540 = 941.
    iou = anchor_wh_iou([[20, 43]], ANCHORS)
    assert iou.shape == (1, 6)
    assert iou[0, 1] == pytest.approx(540 / 941)
    assert iou[0, 2] == pytest.approx(860 / 2146)  # box inside 37x58


def test_box_goes_to_best_anchor_and_every_anchor_above_threshold():
    # Box A: 20x43 px centred at (12, 22.5) in a 128x128 input. Size IoUs with the
    # anchors: 0.163, 0.574 (best), 0.401, 0.129, ... -> anchors 1 and 2, both in the
    # stride-16 layer (mask [0, 1, 2]), slots 1 and 2. Grid 8x8: col floor(12/16)=0,
    # row floor(22.5/16)=1.
    y_true, gt_boxes = assign([[2, 1, 22, 44, 0]])
    large, small = y_true
    assert large.shape == (4, 4, 3, 8) and small.shape == (8, 8, 3, 8)
    assert large[..., 4].sum() == 0
    expected = [12 / 128, 22.5 / 128, 20 / 128, 43 / 128, 1, 1, 0, 0]
    for slot in (1, 2):
        np.testing.assert_allclose(small[1, 0, slot], expected, rtol=1e-6)
    assert small[..., 4].sum() == 2
    assert gt_boxes[1].shape == (90, 4) and gt_boxes[0].shape == (90, 4)
    np.testing.assert_allclose(gt_boxes[1][:2], [expected[:4]] * 2, rtol=1e-6)
    assert not gt_boxes[1][2:].any() and not gt_boxes[0].any()


def test_box_assigned_to_both_layers():
    # Box B: 60x50 px centred at (90, 75), class 2. IoUs: 37x58 -> 1850/3296 = 0.561 (best,
    # stride 16 slot 2), 81x82 -> 3000/6642 = 0.452 (stride 32 slot 0), 23x27 -> 0.207 (no).
    y_true, gt_boxes = assign([[60, 50, 120, 100, 2]])
    large, small = y_true
    expected = [90 / 128, 75 / 128, 60 / 128, 50 / 128, 1, 0, 0, 1]
    np.testing.assert_allclose(large[2, 2, 0], expected, rtol=1e-6)   # 4x4 grid: col 2, row 2
    np.testing.assert_allclose(small[4, 5, 2], expected, rtol=1e-6)   # 8x8 grid: col 5, row 4
    assert large[..., 4].sum() == 1 and small[..., 4].sum() == 1
    np.testing.assert_allclose(gt_boxes[0][0], expected[:4], rtol=1e-6)


def test_non_square_input_grids():
    # 64 high x 96 wide: grids 2x3 (stride 32) and 4x6 (stride 16). A 16x20 box at the top
    # right corner (centre 88, 10) lands in row 0, col 5 of the 4x6 grid, in the slots of
    # anchors 10x14 (IoU 140/320) and 23x27 (IoU 320/621).
    y_true, _ = assign([[80, 0, 96, 20, 1]], input_hw=(64, 96))
    assert y_true[0].shape[:2] == (2, 3) and y_true[1].shape[:2] == (4, 6)
    rows, cols, slots = np.nonzero(y_true[1][..., 4])
    assert list(zip(rows, cols, slots)) == [(0, 5, 0), (0, 5, 1)]
    np.testing.assert_allclose(y_true[1][0, 5, 0, :4], [88 / 96, 10 / 64, 16 / 96, 20 / 64])


def test_label_smoothing_and_box_list_truncation():
    y_true, _ = assign([[2, 1, 22, 44, 0]], smoothing=0.1)
    np.testing.assert_allclose(y_true[1][1, 0, 1, 5:], [0.9, 0.05, 0.05], rtol=1e-6)
    boxes = [[x, 10, x + 20, 53, 0] for x in range(0, 100, 25)]  # 4 boxes, 2 slots each
    _, gt_boxes = assign(boxes, max_boxes=3)
    assert gt_boxes[1].shape == (3, 4) and (gt_boxes[1][:, 2] > 0).all()


def test_empty_and_degenerate_boxes_give_empty_targets():
    y_true, gt_boxes = assign(np.zeros((0, 5)))
    assert not any(t.any() for t in y_true) and not any(g.any() for g in gt_boxes)
    y_true, _ = assign([[10, 10, 10, 30, 0]])  # zero width
    assert not any(t.any() for t in y_true)


# ---------------------------------------------------------------- GIoU

@pytest.mark.parametrize("box1,box2,expected", [
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),                       # identical
    ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7 - (9 - 7) / 9),       # overlap 1, union 7, hull 9
    ([0, 0, 1, 1], [2, 0, 3, 1], 0 - (3 - 2) / 3),           # apart: IoU 0, hull 3, union 2
    ([0, 0, 4, 4], [1, 1, 3, 3], 4 / 16),                    # nested: hull = union
    ([0, 0, 1, 1], [100, 100, 101, 101], -1.0 + 2 / 10201),  # far apart -> close to -1
])
def test_giou_hand_computed(box1, box2, expected):
    value = giou_xyxy(Tensor(np.array([box1], np.float32)), Tensor(np.array([box2], np.float32)))
    assert value.shape == (1, 1)
    assert float(value.asnumpy()[0, 0]) == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- decoding

class FixedHeads(nn.Cell):
    """Stands in for the network: returns given raw head maps whatever the input."""

    def __init__(self, large, small):
        super().__init__()
        self.large, self.small = Tensor(large), Tensor(small)

    def construct(self, x):
        return self.large, self.small


def test_decoding_hand_made_head_output():
    # Non-square input 64x96, C = 2: stride-32 grid 2x3, stride-16 grid 4x6. With raw 0
    # everywhere, sigmoid = 0.5 and 1.1*0.5 - 0.05 = 1.2*0.5 - 0.1 = 0.5: every box sits at
    # its cell centre with its anchor's size.
    num_classes, attrs = 2, 7
    large = np.zeros((1, 3 * attrs, 2, 3), np.float32)
    small = np.zeros((1, 3 * attrs, 4, 6), np.float32)
    # Stride 32, anchor slot 1 (135x169), row 1, col 2: t_x = 2, t_w = ln 2, conf logit 3.
    large[0, 1 * attrs + 0, 1, 2] = 2.0
    large[0, 1 * attrs + 2, 1, 2] = np.log(2.0)
    large[0, 1 * attrs + 4, 1, 2] = 3.0
    infer = YoloInference(FixedHeads(large, small), ANCHORS, MASKS, num_classes)
    out_large, out_small = (o.asnumpy() for o in infer(Tensor(np.zeros((1, 3, 64, 96), np.float32))))
    assert out_large.shape == (1, 2, 3, 3, attrs) and out_small.shape == (1, 4, 6, 3, attrs)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    cell = out_large[0, 1, 2, 1]
    assert cell[0] == pytest.approx((1.1 * sig(2.0) - 0.05 + 2) / 3, rel=1e-5)
    assert cell[1] == pytest.approx((0.5 + 1) / 2, rel=1e-5)
    assert cell[2] == pytest.approx(2 * 135 / 96, rel=1e-5)
    assert cell[3] == pytest.approx(169 / 64, rel=1e-5)
    assert cell[4] == pytest.approx(sig(3.0), rel=1e-5)
    np.testing.assert_allclose(cell[5:], [0.5, 0.5], rtol=1e-6)
    # An untouched stride-16 cell: row 3, col 4, slot 0 (anchor 10x14).
    np.testing.assert_allclose(out_small[0, 3, 4, 0], [4.5 / 6, 3.5 / 4, 10 / 96, 14 / 64, .5, .5, .5],
                               rtol=1e-5)


def encode_targets_as_raw(y_true, layer, input_hw, logit=12.0):
    """Raw head values that decode exactly to the boxes in ``y_true`` (inverse of decoding)."""
    grid_h, grid_w, anchors_per_layer, attrs = y_true.shape
    scale, offset = GRID_SENSITIVITY[layer]
    raw = np.zeros(y_true.shape, np.float32)
    raw[..., 4:] = -logit
    for row, col, slot in zip(*np.nonzero(y_true[..., 4])):
        x, y, w, h = y_true[row, col, slot, :4]
        fx = (x * grid_w - col + offset) / scale
        fy = (y * grid_h - row + offset) / scale
        anchor = ANCHORS[MASKS[layer][slot]]
        raw[row, col, slot, 0:2] = np.log([fx / (1 - fx), fy / (1 - fy)])
        raw[row, col, slot, 2:4] = np.log([w * input_hw[1] / anchor[0], h * input_hw[0] / anchor[1]])
        raw[row, col, slot, 4] = logit
        raw[row, col, slot, 5:] = np.where(y_true[row, col, slot, 5:] > 0.5, logit, -logit)
    return raw.transpose(2, 3, 0, 1).reshape(1, anchors_per_layer * attrs, grid_h, grid_w)


def test_perfect_head_output_gives_near_zero_loss_and_the_boxes_back():
    boxes = np.array([[2, 1, 22, 44, 0], [60, 50, 120, 100, 2], [10, 80, 40, 100, 1]], np.float32)
    y_true, gt_boxes = assign(boxes)
    raws = [encode_targets_as_raw(y_true[layer], layer, (128, 128)) for layer in (0, 1)]
    decoders = build_decoders(ANCHORS, MASKS, 3)
    for layer in (0, 1):
        loss = YoloLayerLoss(decoders[layer], 0.7, 4.0)(
            Tensor(raws[layer]), Tensor(y_true[layer][None]), Tensor(gt_boxes[layer][None]), 128, 128)
        assert float(loss.asnumpy()) < 0.01
    infer = YoloInference(FixedHeads(*raws), ANCHORS, MASKS, 3)
    outputs = [o.asnumpy()[0] for o in infer(Tensor(np.zeros((1, 3, 128, 128), np.float32)))]
    dets = detect(outputs, 128.0, 128.0, DetectionSettings(score_threshold=0.5))
    order = np.argsort(dets.classes)
    by_class = boxes[np.argsort(boxes[:, 4])]
    np.testing.assert_allclose(dets.boxes[order], by_class[:, :4], atol=1e-3)
    assert dets.classes[order].tolist() == [0, 1, 2]


def test_loss_gradients_stay_finite_when_an_unsupervised_cell_explodes():
    # t_w = 95 would overflow exp() in float32; that cell has no object, so its loss weight
    # is zero, but zero times an infinite derivative is NaN without the cap.
    decoder = build_decoders(ANCHORS, MASKS, 2)[0]
    layer_loss = YoloLayerLoss(decoder, 0.7, 4.0)
    raw = np.zeros((1, 21, 2, 2), np.float32)
    raw[0, 2, 0, 0] = 95.0
    y_true = np.zeros((1, 2, 2, 3, 7), np.float32)
    y_true[0, 1, 1, 0, :6] = [0.7, 0.7, 0.3, 0.3, 1, 1]
    gt = np.zeros((1, 90, 4), np.float32)
    gt[0, 0] = [0.7, 0.7, 0.3, 0.3]
    loss_of = lambda r: layer_loss(r, Tensor(y_true), Tensor(gt), 64, 64)  # noqa: E731
    assert np.isfinite(float(loss_of(Tensor(raw)).asnumpy()))
    grad = ms.grad(loss_of)(Tensor(raw)).asnumpy()
    assert np.isfinite(grad).all()
    # Objectness gradient of a plain background cell: sigmoid(0) - 0 = 0.5 (not ignored).
    assert grad[0, 4, 0, 1] == pytest.approx(0.5, abs=1e-6)


def test_loss_network_runs_in_graph_mode_at_two_input_sizes(tmp_path):
    # The loss reads the input size from the image tensor, so multi-scale batches just
    # compile once per size.
    setup_device("CPU", 0, "graph")
    cfg = load_config("config/yolov3_tiny_coco.yaml",
                      overrides=[("num_classes", 3), ("image_size", [64, 64])])
    loss_net = detection.loss_network(cfg, build_network(cfg))
    target, _ = target_function(cfg)
    for size in (64, 96):
        columns = target(np.array([[5, 5, 40, 50, 1]], np.float32), (size, size))
        batch = [Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))]
        batch += [Tensor(np.stack([c, c])) for c in columns]
        assert batch[1].shape == (2, size // 32, size // 32, 3, 8)
        assert np.isfinite(float(loss_net(*batch).asnumpy()))


def test_best_iou_with_ground_truth_equals_the_broadcast_iou(pynative_cpu):
    """The ignore mask's IoU, computed per coordinate, is bit-equal to box_iou_xywh on the
    (N, H, W, A, M, 4) broadcast pair, padding rows (zero boxes) included."""
    import mindspore as ms
    import numpy as np

    from src.yolov3_tiny.loss import best_iou_with_ground_truth, box_iou_xywh

    rng = np.random.RandomState(5)
    pred = rng.uniform(0.05, 0.9, (2, 3, 4, 3, 4)).astype(np.float32)
    gt = rng.uniform(0.05, 0.9, (2, 6, 4)).astype(np.float32)
    gt[1, 4:] = 0.0  # padding slots
    gt[0, 0] = pred[0, 1, 2, 0]  # one exact match: IoU 1
    got = best_iou_with_ground_truth(ms.Tensor(pred), ms.Tensor(gt)).asnumpy()
    want = box_iou_xywh(ms.Tensor(pred[..., None, :]),
                        ms.Tensor(gt.reshape(2, 1, 1, 1, 6, 4))).asnumpy().max(-1, keepdims=True)
    assert got.shape == (2, 3, 4, 3, 1)
    np.testing.assert_array_equal(got, want)
    assert abs(got[0, 1, 2, 0, 0] - 1.0) < 1e-4  # eps 1e-6 over a small union
