"""Network tests: output shapes, parameter counts, option checks, GRAPH mode and ONNX export.

The shape and option tests are parametrized over ``list_models()``, so a newly
registered model is covered automatically: its deploy outputs must have the
shapes its spec's output layout states, and a task without a shape rule fails.
"""
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # lets plain `pytest` find `src` as well
    sys.path.insert(0, str(REPO_ROOT))

import src  # noqa: E402,F401  (must precede mindspore: CPU setup)
import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

import mindspore_hub_conf  # noqa: E402
from src.config import load_config  # noqa: E402
from src.errors import ConfigError  # noqa: E402
from src.registry import create_model, get_model_spec, list_models  # noqa: E402

NUM_CLASSES = 7
# (N, C, H, W) inputs per task; multiples of 32 so VGG and YOLO accept them.
SMALL_INPUTS = {
    "classification": [(2, 3, 64, 64)],
    "detection": [(2, 3, 64, 64), (2, 3, 96, 64)],
}
SHAPE_CASES = [(name, shape) for name in list_models()
               for shape in SMALL_INPUTS[get_model_spec(name).task]]


pytestmark = pytest.mark.usefixtures("pynative_cpu")


def random_input(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def trainable_count(net):
    return sum(p.size for p in net.trainable_params())


def model_config(name, image_size):
    return load_config(overrides=[("model", name), ("num_classes", NUM_CLASSES),
                                  ("image_size", list(image_size)),
                                  ("dataset", "coco" if get_model_spec(name).task == "detection"
                                   else "cifar10")])


def expected_output_shapes(name, batch_shape, num_classes):
    """Deploy-network output shapes: the spec's layout for one image, batched."""
    n, _, h, w = batch_shape
    spec = get_model_spec(name)
    cfg = model_config(name, (h, w)).replace(num_classes=num_classes)
    shapes = [(n, *shape) for shape in spec.output_shapes(cfg)]
    if spec.task == "classification":
        assert shapes == [(n, num_classes)], f"{name}: a classifier's output is its logits"
    else:
        assert spec.task == "detection", f"{name}: no shape rule for task {spec.task!r}"
    return shapes


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def deploy_outputs(name, net, batch):
    cfg = model_config(name, batch.shape[2:])
    deploy = get_model_spec(name).deploy_network(cfg, net)
    deploy.set_train(False)
    return as_list(deploy(batch))


@pytest.mark.parametrize("name,shape", SHAPE_CASES)
def test_forward_shape_and_finite(name, shape):
    net = create_model(name, NUM_CLASSES, image_size=shape[2:])
    net.set_train(False)
    batch = random_input(shape)
    for out in as_list(net(batch)):
        assert np.isfinite(out.asnumpy()).all()
    outputs = deploy_outputs(name, net, batch)
    assert [tuple(o.shape) for o in outputs] == expected_output_shapes(name, shape, NUM_CLASSES)
    for out in outputs:
        assert np.isfinite(out.asnumpy()).all()


@pytest.mark.parametrize("name", list_models())
def test_every_spec_part_resolves(name):
    spec = get_model_spec(name)
    for part in spec.PARTS:
        value = getattr(spec, part)
        assert value is None or callable(value) or part == "preprocessing", (name, part)
    if spec.task == "detection":
        assert all(callable(getattr(spec, p)) for p in ("targets", "loss", "decode", "output_layout"))


@pytest.mark.parametrize("name", list_models())
def test_unknown_net_option_is_config_error(name):
    with pytest.raises(ConfigError, match="not_an_option"):
        create_model(name, NUM_CLASSES, image_size=(64, 64), not_an_option=1)


@pytest.mark.parametrize("name", list_models())
def test_every_net_option_has_a_default(name):
    params = inspect.signature(get_model_spec(name).builder).parameters
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty]
    assert not missing, f"{name} builder arguments without defaults: {missing}"


@pytest.mark.parametrize("name", list_models())
def test_invalid_weight_init_is_config_error(name):
    if "weight_init" not in get_model_spec(name).net_options():
        pytest.skip("model has no weight_init option")
    with pytest.raises(ConfigError, match="weight_init"):
        create_model(name, NUM_CLASSES, image_size=(64, 64), weight_init="bogus")


VGG_CIFAR = dict(batch_norm=True, has_bias=False, pad_mode="same", dropout=0.0,
                 weight_init="xavier_uniform")
PARAM_COUNTS = [
    ("tinydarknet", 1000, (224, 224), {}, 1_043_104),
    ("mobilenetv1", 1000, (224, 224), {}, 4_231_976),
    ("mobilenetv1", 1001, (224, 224), {}, 4_233_001),
    ("vgg16", 1000, (224, 224), {"has_bias": True}, 138_357_544),
    ("vgg16", 1000, (224, 224), {"has_bias": False}, 138_353_320),
    ("vgg16", 10, (224, 224), VGG_CIFAR, 134_305_738),
    ("yolov3_tiny", 80, (640, 640), {}, 8_852_366),
]


@pytest.mark.parametrize("name,num_classes,image_size,options,expected", PARAM_COUNTS)
def test_trainable_parameter_count(name, num_classes, image_size, options, expected):
    # Only builds the network: a VGG16 forward at 224 is too slow for a unit test.
    assert trainable_count(create_model(name, num_classes, image_size, **options)) == expected


def test_tinydarknet_honours_num_classes():
    net = create_model("tinydarknet", 10, image_size=(64, 64))
    net.set_train(False)
    assert net(random_input((2, 3, 64, 64))).shape == (2, 10)


def test_tinydarknet_odd_input_size():
    # CIFAR recipe feeds 227x227; 'same' pools round up instead of failing.
    net = create_model("tinydarknet", 10, image_size=(227, 227))
    net.set_train(False)
    assert net(random_input((1, 3, 67, 67))).shape == (1, 10)


def test_vgg16_small_image_size():
    net = create_model("vgg16", 10, image_size=(32, 32), **VGG_CIFAR)
    net.set_train(False)
    out = net(random_input((2, 3, 32, 32)))
    assert out.shape == (2, 10)
    assert np.isfinite(out.asnumpy()).all()


@pytest.mark.parametrize("image_size", [(100, 100), (224, 100), (0, 32)])
def test_vgg16_image_size_not_multiple_of_32(image_size):
    with pytest.raises(ConfigError, match="multiples of 32"):
        create_model("vgg16", 10, image_size=image_size)


@pytest.mark.parametrize("options,option_name", [
    ({"pad_mode": "valid"}, "pad_mode"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": "half"}, "dropout"),
])
def test_vgg16_invalid_options(options, option_name):
    with pytest.raises(ConfigError, match=option_name):
        create_model("vgg16", 10, image_size=(32, 32), **options)


def test_vgg16_pad_modes_agree_in_shape():
    shapes = []
    for pad_mode in ("pad", "same"):
        net = create_model("vgg16", 10, image_size=(32, 32), pad_mode=pad_mode, dropout=0.0)
        net.set_train(False)
        shapes.append(net(random_input((1, 3, 32, 32))).shape)
    assert shapes == [(1, 10), (1, 10)]


def test_yolov3_tiny_rejects_size_not_multiple_of_32():
    with pytest.raises(ConfigError, match="multiples of 32"):
        create_model("yolov3_tiny", 80, image_size=(100, 96))


def test_yolov3_tiny_graph_mode_any_size():
    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_model("yolov3_tiny", 3, image_size=(64, 64))
    net.set_train(False)
    for shape in [(1, 3, 64, 64), (1, 3, 96, 128)]:
        big, small = net(random_input(shape))
        assert big.shape == (1, 24, shape[2] // 32, shape[3] // 32)
        assert small.shape == (1, 24, shape[2] // 16, shape[3] // 16)


def test_yolov3_tiny_pynative_matches_graph():
    x = random_input((1, 3, 64, 96))
    net = create_model("yolov3_tiny", 3, image_size=(64, 96))
    net.set_train(False)
    eager = [o.asnumpy() for o in net(x)]
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = [o.asnumpy() for o in net(x)]
    for a, b in zip(eager, graph):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_yolov3_tiny_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    x = random_input((1, 3, 96, 64))
    net = create_model("yolov3_tiny", 80, image_size=(96, 64))
    net.set_train(False)
    expected = [o.asnumpy() for o in net(x)]
    ms.export(net, x, file_name=str(tmp_path / "yolov3_tiny"), file_format="ONNX")
    session = ort.InferenceSession(str(tmp_path / "yolov3_tiny.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x.asnumpy()})
    assert [g.shape for g in got] == [(1, 255, 3, 2), (1, 255, 6, 4)]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_hub_create_network(name):
    net = mindspore_hub_conf.create_network(name, NUM_CLASSES, (64, 64))
    net.set_train(False)
    outputs = deploy_outputs(name, net, random_input((1, 3, 64, 64)))
    assert [tuple(o.shape) for o in outputs] == expected_output_shapes(name, (1, 3, 64, 64),
                                                                       NUM_CLASSES)


def test_hub_defaults_and_unknown_name():
    assert mindspore_hub_conf.create_network("mobilenetv1").classifier.weight.shape == (1001, 1024)
    with pytest.raises(ConfigError, match="unknown network 'resnet50'"):
        mindspore_hub_conf.create_network("resnet50")


def test_init_weights_schemes():
    from mindspore import nn
    from src.layers import init_weights

    net = nn.SequentialCell([nn.Conv2d(16, 32, 3, has_bias=True), nn.Dense(64, 50)])
    init_weights(net, "kaiming_uniform", bias="fan_in_uniform")
    conv_bound = 1 / np.sqrt(16 * 9)  # a=sqrt(5) gives 1/sqrt(fan_in)
    weight, bias = net[0].weight.asnumpy(), net[0].bias.asnumpy()
    assert np.abs(weight).max() <= conv_bound + 1e-6
    assert np.abs(bias).max() <= conv_bound + 1e-6
    # Lower bounds too: U(-b, b) has std b/sqrt(3) and fills its range (all-zero fails).
    assert weight.std() == pytest.approx(conv_bound / np.sqrt(3), rel=0.1)
    assert np.abs(weight).max() >= 0.95 * conv_bound
    assert np.abs(bias).max() >= 0.5 * conv_bound and len(np.unique(bias)) == bias.size
    init_weights(net, "truncated_normal", cell_types=(nn.Dense,), sigma=0.02, bias="zeros")
    dense = net[1].weight.asnumpy()
    assert np.abs(dense).max() <= 0.04 + 1e-6  # cut at 2 sigma
    # A normal cut at 2 sigma keeps about 0.88 sigma of spread.
    assert dense.std() == pytest.approx(0.88 * 0.02, rel=0.1)
    assert abs(dense.mean()) < 0.002
    assert not net[1].bias.asnumpy().any()
    with pytest.raises(ConfigError, match="weight_init"):
        init_weights(net, "orthogonal-ish")
