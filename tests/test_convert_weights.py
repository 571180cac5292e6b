"""convert_weights.py: published-format weights -> zoo checkpoints that compute what the source did.

Darknet files are checked against OpenCV's independent Darknet importer,
torchvision/timm files against small PyTorch re-implementations written here
(torchvision and timm cannot be imported beside the pinned torch). Every
source file is generated with random values in the source's exact layout.
"""
import dataclasses
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import convert_weights
from src.checkpoint import load_network_weights, read_checkpoint
from src.cli import run_main
from src.datasets.letterbox import letterbox, unletterbox_boxes
from src.pretrained import darknet
from src.pretrained.known_files import KNOWN_FILES, sha256_of
from src.pretrained.recipes import darknet_imagenet_labels
from src.registry import create_model
from test_deploy_cpp import app_build_dir  # noqa: F401  (session fixture: builds the app once)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO_ROOT, "tests", "data")
YOLO_CFG = darknet.cfg_path_for("yolov3-tiny.cfg")
TINY_CFG = darknet.cfg_path_for("tiny.cfg")


def relative_error(actual, expected):
    return float(np.abs(np.asarray(actual) - np.asarray(expected)).max()
                 / np.abs(np.asarray(expected)).max())


def write_darknet_weights(cfg_path, out_path, seed, header=(0, 2, 0)):
    """Random .weights for ``cfg_path``: BN statistics far from mean 0 / var 1, He-scaled weights."""
    rng = np.random.default_rng(seed)
    parts = []
    for conv in darknet.conv_layers(cfg_path):
        n = conv.filters
        parts.append(rng.normal(0.0, 0.1, n))                       # bias / BN beta
        if conv.batch_normalize:
            variance = rng.uniform(0.5, 2.0, n)
            # A tenth of the channels have variances near the epsilons, so an unfolded
            # epsilon difference shows; their gamma keeps the activations O(1).
            tiny = rng.random(n) < 0.1
            variance[tiny] = rng.uniform(1e-6, 1e-5, tiny.sum())
            parts += [rng.uniform(0.5, 1.5, n) * np.sqrt(variance),  # gamma
                      rng.normal(0.0, 0.5, n),                       # rolling mean
                      variance]                                      # rolling variance
        shape = conv.weight_shape()
        parts.append(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), np.prod(shape)))
    wide = header[0] * 10 + header[1] >= 2
    with open(out_path, "wb") as f:
        f.write(np.asarray(header, "<i4").tobytes())
        f.write(np.asarray([64000], "<i8" if wide else "<i4").tobytes())
        f.write(np.concatenate(parts).astype("<f4").tobytes())
    return out_path


def run_cli(argv, capsys):
    """Run convert_weights.py in-process like the command line: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(convert_weights.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def zoo_network(ckpt):
    """The network a converted checkpoint describes, with its weights, in eval mode."""
    tensors, meta = read_checkpoint(str(ckpt))
    cfg = json.loads(meta["config"])
    assert cfg["model"] == meta["model"] and cfg["num_classes"] == meta["num_classes"]
    from mindspore.nn.utils import no_init_parameters
    with no_init_parameters():  # every parameter comes from the checkpoint
        net = create_model(meta["model"], meta["num_classes"], cfg["image_size"], **cfg["net"])
    load_network_weights(net, tensors)
    net.set_train(False)
    return net, meta, cfg


def assert_one_error_line(code, err, *fragments):
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------- Darknet

@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory):
    return write_darknet_weights(YOLO_CFG, tmp_path_factory.mktemp("dn") / "yolov3-tiny.weights", 1)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    # The old 4-byte "images seen" header (format 0.1).
    return write_darknet_weights(TINY_CFG, tmp_path_factory.mktemp("dn") / "tiny.weights", 2,
                                 header=(0, 1, 0))


@pytest.fixture
def converted_tiny(tiny_weights, tmp_path, capsys):
    """tiny_weights converted with the default settings: the checkpoint's path."""
    converted = tmp_path / "tinydarknet_darknet.ckpt"
    code, _, err = run_cli(["--source=darknet", "--model=tinydarknet", f"--input={tiny_weights}",
                            f"--output={converted}"], capsys)
    assert code == 0, err
    return converted


def test_darknet_cfgs_hold_the_published_float_counts():
    assert sum(c.float_count() for c in darknet.conv_layers(YOLO_CFG)) == 8_858_734
    assert sum(c.float_count() for c in darknet.conv_layers(TINY_CFG)) == 1_046_488


def convert_darknet(model, weights, out, capsys, *extra):
    """Convert with OpenCV's BN epsilon (1e-6, folded into the moving variance); (net, meta, cfg, stdout)."""
    code, stdout, err = run_cli(["--source=darknet", f"--model={model}", f"--input={weights}",
                                 f"--output={out}", "--source_bn_eps=1e-6", *extra], capsys)
    assert code == 0, err
    return (*zoo_network(out), stdout)


def opencv_forward(cfg, weights, x, outputs):
    """OpenCV's Darknet importer run on ``x``: the named layer outputs."""
    import cv2
    reference = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    reference.setInput(x)
    return reference.forward(outputs)


def test_darknet_yolov3_tiny_equals_opencv_heads_and_detections(yolo_weights, tmp_path, capsys,
                                                                pynative_cpu):
    import cv2
    import mindspore as ms
    from src.yolov3_tiny.loss import YoloInference
    from src.yolov3_tiny.postprocess import DetectionSettings, detect

    net, meta, cfg, stdout = convert_darknet("yolov3_tiny", yolo_weights, tmp_path / "yolo.ckpt",
                                             capsys)
    assert "is not a known published file" in stdout
    assert cfg["image_size"] == [416, 416] and cfg["net"]["grid_sensitivity"] is False
    assert json.loads(meta["class_names"])[:2] == ["person", "bicycle"]
    assert json.loads(meta["preprocessing"])["resize_mode"] == "letterbox"
    # In the config too, so entry points reading the checkpoint's config preprocess as Darknet.
    assert cfg["preprocess"] == {"mean": [0.0] * 3, "std": [255.0] * 3,
                                 "resize_mode": "letterbox", "letterbox_fill": 0.5}
    from src.config import config_from_dict
    from src.deploy.spec import app_flags, spec_from_config
    spec = spec_from_config(config_from_dict(cfg))  # what export.py writes beside the export
    assert spec["preprocess"]["resize_mode"] == "letterbox" and spec["preprocess"]["height"] == 416
    assert {"--resize_mode=letterbox", "--letterbox_fill=0.5", "--mean=0.0,0.0,0.0",
            "--std=255.0,255.0,255.0"} <= set(app_flags(spec))

    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.uniform(0, 1, (240, 320, 3)).astype(np.float32), (9, 9), 3)
    preprocessing = json.loads(meta["preprocessing"])
    canvas, scale, pad = letterbox(photo, (416, 416), preprocessing["letterbox_fill"])
    x = canvas.transpose(2, 0, 1)[None].copy()
    cv_raw32, cv_raw16, cv_yolo16, cv_yolo23 = opencv_forward(
        YOLO_CFG, yolo_weights, x, ["conv_15", "conv_22", "yolo_16", "yolo_23"])
    zoo_raw32, zoo_raw16 = (o.asnumpy() for o in net(ms.Tensor(x)))
    assert relative_error(zoo_raw32, cv_raw32) < 1e-4
    assert relative_error(zoo_raw16, cv_raw16) < 1e-4

    class OpenCVHeads(ms.nn.Cell):
        grid_sensitivity = False  # what the converted checkpoint's network says

        def construct(self, image):
            return ms.Tensor(cv_raw32), ms.Tensor(cv_raw16)

    d = cfg["detection"]
    zoo_decoded = [o.asnumpy()[0] for o in YoloInference(net, d["anchors"], d["anchor_masks"], 80)(
        ms.Tensor(x))]
    cv_decoded = [o.asnumpy()[0] for o in YoloInference(OpenCVHeads(), d["anchors"],
                                                        d["anchor_masks"], 80)(ms.Tensor(x))]
    # Darknet's own decode (OpenCV's yolo layers: plain sigmoid + cell centres) agrees too.
    for ours, theirs in zip(zoo_decoded, (cv_yolo16, cv_yolo23)):
        np.testing.assert_allclose(ours.reshape(-1, 85)[:, :5], theirs[:, :5], rtol=1e-4, atol=1e-5)

    settings = DetectionSettings(score_threshold=0.2, max_detections=50)
    results = []
    for decoded in (zoo_decoded, cv_decoded):
        dets = detect(decoded, 416.0, 416.0, settings)
        results.append((unletterbox_boxes(dets.boxes, scale, pad, 320, 240), dets.scores,
                        dets.classes))
    assert len(results[0][1]) > 10
    np.testing.assert_array_equal(results[0][2], results[1][2])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, atol=1e-2)


def test_darknet_tinydarknet_equals_opencv_in_sorted_wnid_order(tiny_weights, tmp_path, capsys,
                                                                 pynative_cpu):
    import mindspore as ms

    net, meta, cfg, _ = convert_darknet("tinydarknet", tiny_weights, tmp_path / "tiny.ckpt", capsys)
    assert cfg["net"]["final_conv"] == "linear" and cfg["net"]["leaky_alpha"] == 0.1
    # Darknet's classifier input: RGB/255, central crop (no letterbox).
    assert cfg["preprocess"]["mean"] == [0.0] * 3 and cfg["preprocess"]["std"] == [255.0] * 3
    assert cfg["preprocess"]["resize_mode"] == "" and cfg["data"]["resize_eval"] == 224
    wnids, names = darknet_imagenet_labels()
    labels = json.loads(meta["class_labels"])
    assert labels == sorted(wnids) and labels[0] == "n01440764"
    assert json.loads(meta["class_names"])[0] == "tench"

    x = np.random.default_rng(4).uniform(0, 1, (2, 3, 224, 224)).astype(np.float32)
    cv_logits = opencv_forward(TINY_CFG, tiny_weights, x, "avgpool_20").reshape(2, -1)
    zoo_logits = net(ms.Tensor(x)).asnumpy()
    order = np.argsort(wnids)  # zoo class k is Darknet's output order[k]
    assert relative_error(zoo_logits, cv_logits[:, order]) < 1e-4
    assert names[order[0]] == "tench"


def test_darknet_labels_file_orders_a_custom_classifier(tmp_path, capsys, pynative_cpu):
    import mindspore as ms

    cfg_text = open(TINY_CFG).read().replace("filters=1000", "filters=5")
    cfg = tmp_path / "tiny5.cfg"
    cfg.write_text(cfg_text)
    weights = write_darknet_weights(cfg, tmp_path / "tiny5.weights", 5)
    labels = ["zebra", "apple", "mango", "cherry", "banana"]
    (tmp_path / "labels.txt").write_text("".join(f"{label} The {label}\n" for label in labels))
    net, meta, _, _ = convert_darknet("tinydarknet", weights, tmp_path / "tiny5.ckpt", capsys,
                                      f"--cfg={cfg}", f"--labels={tmp_path / 'labels.txt'}")
    assert json.loads(meta["class_labels"]) == sorted(labels)
    assert json.loads(meta["class_names"])[0] == "The apple"
    x = np.random.default_rng(6).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32)
    cv_logits = opencv_forward(cfg, weights, x, "avgpool_20").reshape(1, -1)
    assert relative_error(net(ms.Tensor(x)).asnumpy(), cv_logits[:, [1, 4, 3, 2, 0]]) < 1e-4


# ----------------------------------------------------------------------------- PyTorch sources

def recorded_state_dict(name):
    with open(os.path.join(DATA, name)) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return [(key, tuple(int(v) for v in shape.split(","))) for key, shape in rows]


def randomise_batch_norm(module, torch, seed):
    generator = torch.Generator().manual_seed(seed)
    for child in module.modules():
        if isinstance(child, torch.nn.BatchNorm2d):
            n = child.num_features
            child.weight.data = torch.rand(n, generator=generator) + 0.5
            child.bias.data = torch.randn(n, generator=generator) * 0.1
            child.running_mean = torch.randn(n, generator=generator) * 0.5
            child.running_var = torch.rand(n, generator=generator) * 1.5 + 0.5


def torch_mobilenetv1(torch):
    """timm's mobilenetv1_100 layout: conv_stem/bn1, blocks.s.b.{conv_dw,bn1,conv_pw,bn2}, classifier."""
    nn = torch.nn

    class DepthwiseSeparable(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
            self.bn1 = nn.BatchNorm2d(cin)
            self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)

        def forward(self, x):
            x = torch.nn.functional.relu6(self.bn1(self.conv_dw(x)))
            return torch.nn.functional.relu6(self.bn2(self.conv_pw(x)))

    class MobileNetV1(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(32)
            stages, cin = [], 32
            for outs in ([(64, 1)], [(128, 2), (128, 1)], [(256, 2), (256, 1)],
                         [(512, 2)] + [(512, 1)] * 5, [(1024, 2), (1024, 1)]):
                blocks = []
                for cout, stride in outs:
                    blocks.append(DepthwiseSeparable(cin, cout, stride))
                    cin = cout
                stages.append(nn.Sequential(*blocks))
            self.blocks = nn.Sequential(*stages)
            self.classifier = nn.Linear(1024, 1000)

        def forward(self, x):
            x = self.blocks(torch.nn.functional.relu6(self.bn1(self.conv_stem(x))))
            return self.classifier(x.mean((2, 3)))

    return MobileNetV1()


def torch_vgg16(torch):
    """torchvision's vgg16 layout: features.{conv indices}, avgpool 7x7, classifier.{0,3,6}."""
    nn = torch.nn

    class VGG16(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [], 3
            for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                         512, 512, 512, "M"):
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=True)]
                    cin = item
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(4096, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG16()


def source_layout(state_dict):
    return [(k, tuple(v.shape)) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """(safetensors path, .pth path, torch logits, input) of a random timm-layout MobileNetV1."""
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file
    torch.manual_seed(0)
    model = torch_mobilenetv1(torch)
    randomise_batch_norm(model, torch, 1)
    model.eval()
    assert source_layout(model.state_dict()) == recorded_state_dict("timm_mobilenetv1_100_state_dict.txt")
    folder = tmp_path_factory.mktemp("timm")
    tensors = {k: v.numpy() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    save_file(tensors, str(folder / "model.safetensors"))
    torch.save(model.state_dict(), folder / "mobilenetv1_100.pth")
    # torch < 1.6's stream format, which files published before 2020 use.
    torch.save(model.state_dict(), folder / "legacy.pth", _use_new_zipfile_serialization=False)
    x = np.random.default_rng(7).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return folder / "model.safetensors", folder / "mobilenetv1_100.pth", logits, x


@pytest.mark.parametrize("kind", ["safetensors", "pth", "legacy pth"])
def test_timm_mobilenetv1_logits_equal_pytorch(timm_files, kind, tmp_path, capsys, pynative_cpu):
    import mindspore as ms
    safetensors_path, pth_path, logits, x = timm_files
    out = tmp_path / "mobilenetv1.ckpt"
    source = {"safetensors": safetensors_path, "pth": pth_path,
              "legacy pth": pth_path.parent / "legacy.pth"}[kind]
    code, _, err = run_cli(["--source=timm", "--model=mobilenetv1", f"--input={source}",
                            f"--output={out}"], capsys)
    assert code == 0, err
    net, meta, cfg = zoo_network(out)
    assert cfg["net"]["stride2_padding"] == "symmetric" and meta["num_classes"] == 1000
    assert json.loads(meta["preprocessing"])["mean"] == [127.5] * 3
    assert json.loads(meta["config"])["preprocess"]["std"] == [127.5] * 3
    assert json.loads(meta["class_labels"])[0] == "n01440764"
    assert relative_error(net(ms.Tensor(x)).asnumpy(), logits) < 1e-4


@pytest.mark.slow
def test_torchvision_vgg16_logits_equal_pytorch(tmp_path, capsys, pynative_cpu):
    """The full 138 M-parameter layout at 224 (one copy per framework at a time)."""
    torch = pytest.importorskip("torch")
    import mindspore as ms
    torch.manual_seed(0)
    model = torch_vgg16(torch).eval()
    assert source_layout(model.state_dict()) == recorded_state_dict("torchvision_vgg16_state_dict.txt")
    pth = tmp_path / "vgg16-random.pth"
    torch.save(model.state_dict(), pth)
    x = np.random.default_rng(8).uniform(-2, 2, (1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    del model
    out = tmp_path / "vgg16.ckpt"
    code, _, err = run_cli(["--source=torchvision", "--model=vgg16", f"--input={pth}",
                            f"--output={out}"], capsys)
    assert code == 0, err
    pth.unlink()
    net, meta, cfg = zoo_network(out)
    assert cfg["net"]["has_bias"] is True and cfg["data"]["resize_eval"] == 256
    assert relative_error(net(ms.Tensor(x)).asnumpy(), logits) < 1e-4


# ----------------------------------------------------------------------------- bad inputs

def assert_nothing_written(folder):
    assert not [p for p in os.listdir(folder) if p.endswith(".ckpt") or ".tmp" in p]


def test_truncated_weights_are_refused(yolo_weights, tmp_path, capsys):
    cut = tmp_path / "cut.weights"
    cut.write_bytes(yolo_weights.read_bytes()[:-400])
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={cut}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, "truncated", "8858734")
    assert_nothing_written(tmp_path)


def test_weights_of_another_network_are_refused(tiny_weights, tmp_path, capsys):
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={tiny_weights}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, "another network", "--model")
    assert_nothing_written(tmp_path)


def test_pth_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = torch_mobilenetv1(torch).state_dict()
    state["payload"] = Payload()
    torch.save(state, tmp_path / "evil.pth")
    proc = subprocess.run([sys.executable, "convert_weights.py", "--source=timm",
                           "--model=mobilenetv1", f"--input={tmp_path / 'evil.pth'}",
                           f"--output={tmp_path / 'out.ckpt'}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert_one_error_line(proc.returncode, proc.stderr, "posix.system", "refusing")
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("change, fragment", [("drop", "1 missing (classifier.bias)"),
                                              ("add", "1 unexpected (head.extra)")])
def test_safetensors_with_missing_or_extra_keys_are_refused(timm_files, change, fragment,
                                                            tmp_path, capsys):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(timm_files[0]))
    if change == "drop":
        del tensors["classifier.bias"]
    else:
        tensors["head.extra"] = np.zeros(3, np.float32)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    code, _, err = run_cli(["--source=timm", "--model=mobilenetv1", f"--input={path}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, fragment, "--model")
    assert_nothing_written(tmp_path)


def test_model_that_does_not_fit_the_file_is_refused(timm_files, tiny_weights, tmp_path, capsys):
    _, pth_path, _, _ = timm_files
    code, _, err = run_cli(["--source=torchvision", "--model=vgg16", f"--input={pth_path}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, "32 missing", "164 unexpected", "--model")
    code, _, err = run_cli(["--source=timm", "--model=tinydarknet", f"--input={tiny_weights}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, "--source=darknet --model=tinydarknet")
    assert_nothing_written(tmp_path)


def test_a_failed_conversion_keeps_an_existing_output(yolo_weights, tmp_path, capsys):
    out = tmp_path / "kept.ckpt"
    out.write_bytes(b"earlier result")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(yolo_weights.read_bytes()[:1000])
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={cut}",
                            f"--output={out}"], capsys)
    assert_one_error_line(code, err, "truncated")
    assert out.read_bytes() == b"earlier result"


# ----------------------------------------------------------------------------- download

@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, request paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, requests
    server.shutdown()
    server.server_close()


def test_download_verifies_caches_and_converts(local_server, tmp_path, capsys, monkeypatch):
    url, root, requests = local_server
    weights = write_darknet_weights(YOLO_CFG, root / "yolov3-tiny.weights", 9)
    digest = sha256_of(weights)
    monkeypatch.setitem(KNOWN_FILES, "yolov3-tiny", dataclasses.replace(
        KNOWN_FILES["yolov3-tiny"], sha256=digest, size=weights.stat().st_size))
    cache = tmp_path / "cache"
    argv = ["--download=yolov3-tiny", f"--url={url}/yolov3-tiny.weights", f"--cache_dir={cache}"]
    code, stdout, err = run_cli(argv + [f"--output={tmp_path / 'a.ckpt'}"], capsys)
    assert code == 0, err
    assert "100.0%" in err and "is the published yolov3-tiny weights" in stdout
    assert sha256_of(cache / "yolov3-tiny.weights") == digest
    _, meta = read_checkpoint(str(tmp_path / "a.ckpt"))
    assert json.loads(meta["converted_from"])["published"].startswith("COCO test-dev mAP@0.5 33.1")
    code, stdout, err = run_cli(argv + [f"--output={tmp_path / 'b.ckpt'}"], capsys)
    assert code == 0 and "using cached" in stdout
    assert len(requests) == 1


def test_download_with_a_wrong_sha256_leaves_nothing(local_server, tmp_path, capsys):
    url, root, _ = local_server
    (root / "yolov3-tiny.weights").write_bytes(os.urandom(4096))
    cache = tmp_path / "cache"
    code, _, err = run_cli(["--download=yolov3-tiny", f"--url={url}/yolov3-tiny.weights",
                            f"--cache_dir={cache}", f"--output={tmp_path / 'x.ckpt'}"], capsys)
    errors = "\n".join(line for line in err.splitlines() if not line.startswith("downloading "))
    assert_one_error_line(code, errors, "sha256", KNOWN_FILES["yolov3-tiny"].sha256)
    assert os.listdir(cache) == []
    assert not (tmp_path / "x.ckpt").exists()


# ----------------------------------------------------------------------------- network options

def test_network_options_match_the_sources_parameter_counts():
    def trainable(net):
        return sum(int(np.prod(p.shape)) for p in net.trainable_params())

    assert trainable(create_model("tinydarknet", 1000)) == 1_043_104           # upstream
    assert trainable(create_model("tinydarknet", 1000, final_conv="linear")) == 1_042_104  # tiny.cfg
    assert trainable(create_model("mobilenetv1", 1000, stride2_padding="symmetric")) == 4_231_976
    assert trainable(create_model("yolov3_tiny", 80, (416, 416), grid_sensitivity=False)) == 8_852_366


# ----------------------------------------------------------------------------- fine-tuning

def three_class_coco(coco_dir, target, categories=(1, 3, 18)):
    """The demo COCO training images and boxes of three categories, as a 3-class COCO set."""
    import shutil
    with open(coco_dir / "annotations" / "instances_train2017.json", encoding="utf-8") as f:
        doc = json.load(f)
    annotations = [a for a in doc["annotations"] if a["category_id"] in categories]
    ids = {a["image_id"] for a in annotations}
    images = [img for img in doc["images"] if img["id"] in ids][:16]
    kept = {img["id"] for img in images}
    (target / "images").mkdir(parents=True)
    for img in images:
        shutil.copy(coco_dir / "train2017" / img["file_name"], target / "images")
    doc.update(images=images, annotations=[a for a in annotations if a["image_id"] in kept],
               categories=[c for c in doc["categories"] if c["id"] in categories])
    (target / "ann.json").write_text(json.dumps(doc))
    return target / "images", target / "ann.json"


def train_and_eval(args, tmp_path):
    proc = subprocess.run([sys.executable, "train.py", *args, f"--output_dir={tmp_path / 'out'}",
                           "--run_name=finetune", "--data.num_workers=1", "--log_interval=1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if "loaded pretrained weights" in line], proc


@pytest.mark.slow
def test_converted_yolov3_tiny_fine_tunes_to_three_classes(yolo_weights, demo_data, tmp_path,
                                                          capsys):
    converted = tmp_path / "yolov3_tiny_darknet.ckpt"
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={yolo_weights}",
                            f"--output={converted}"], capsys)
    assert code == 0, err
    images, ann = three_class_coco(demo_data["coco"], tmp_path / "three")
    data = [f"--data.train_dir={images}", f"--data.train_ann_file={ann}",
            f"--data.eval_dir={images}", f"--data.eval_ann_file={ann}"]
    lines, proc = train_and_eval(
        ["--config_path=config/yolov3_tiny_coco.yaml", *data, "--num_classes=3",
         "--image_size=128", "--batch_size=8", "--epochs=1", "--detection.multi_scale=[]",
         "--net.grid_sensitivity=false", "--lr.warmup_epochs=0", "--lr.base_lr=0.0001",
         "--checkpoint.eval_every_epochs=1", f"--pretrained={converted}"], tmp_path)
    assert lines == [f"loaded pretrained weights from {converted}: 55 tensors loaded; "
                     f"4 re-initialised (head_stride16, head_stride32)"], proc.stdout[-2000:]
    assert "mAP" in proc.stdout
    # Everything but the heads starts as converted.
    trained, _ = read_checkpoint(str(next((tmp_path / "out" / "finetune" / "checkpoints")
                                          .glob("*.ckpt"))))
    assert trained["head_stride32.weight"].shape == (24, 512, 1, 1)


@pytest.mark.slow
def test_converted_classifier_fine_tunes_from_1000_to_10_classes(converted_tiny, demo_data,
                                                                 tmp_path):
    converted = converted_tiny
    lines, proc = train_and_eval(
        ["--config_path=config/demo.yaml", f"--data_dir={demo_data['cifar10']}",
         "--data.demo=False", "--epochs=1", "--checkpoint.eval_every_epochs=1",
         "--net.final_conv=linear", "--net.leaky_alpha=0.1", "--net.bn_eps=1.0e-5",
         f"--pretrained={converted}"], tmp_path)
    assert lines == [f"loaded pretrained weights from {converted}: 75 tensors loaded; "
                     f"2 re-initialised (features.19.conv)"], proc.stdout[-2000:]
    assert "accuracy" in proc.stdout


def test_bn_eps_option_must_be_a_number():
    from src.errors import ConfigError
    for model in ("tinydarknet", "mobilenetv1", "yolov3_tiny"):
        with pytest.raises(ConfigError, match=r"'bn_eps' must be a number in \(0, 1\), got '1e-5' "
                                              r"\(YAML reads 1e-5 as text: write 1.0e-5\)"):
            create_model(model, 10, (224, 224), bn_eps="1e-5")


def test_letterbox_keeps_the_aspect_ratio_and_maps_boxes_back():
    image = np.random.default_rng(0).uniform(0, 1, (100, 200, 3)).astype(np.float32)
    canvas, scale, pad = letterbox(image, (416, 416), 0.5)
    assert canvas.shape == (416, 416, 3) and scale == 416 / 200 and pad == (0, 104)
    assert (canvas[:104] == 0.5).all() and (canvas[104 + 208:] == 0.5).all()
    assert abs(float(canvas[104:312].mean()) - float(image.mean())) < 0.01
    boxes = np.array([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 416.0, 416.0]])
    on_canvas = boxes * scale + [0, 104, 0, 104]
    back = unletterbox_boxes(on_canvas[:1], scale, pad, 200, 100)
    np.testing.assert_allclose(back, boxes[:1], atol=1e-4)
    np.testing.assert_allclose(unletterbox_boxes(boxes[1:], scale, pad, 200, 100),
                               [[0, 0, 200, 100]])  # clipped to the image


def test_a_published_file_of_another_model_is_refused(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(KNOWN_FILES, "tiny", dataclasses.replace(
        KNOWN_FILES["tiny"], sha256=sha256_of(tiny_weights)))
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={tiny_weights}",
                            f"--output={tmp_path / 'out.ckpt'}"], capsys)
    assert_one_error_line(code, err, "is the published tiny (darknet tinydarknet)",
                          "--source=darknet --model=tinydarknet")
    assert_nothing_written(tmp_path)


def test_pretrained_backbone_loads_only_the_backbone(tmp_path):
    import mindspore as ms
    from mindspore.nn.utils import no_init_parameters
    from src.checkpoint import load_pretrained, save_checkpoint
    from src.config import load_config
    from src.errors import CheckpointError

    cfg = load_config("config/yolov3_tiny_coco.yaml",
                      cli_args=["--pretrained_backbone=a.ckpt", "--resume_yolo=b.ckpt"])
    assert (cfg.pretrained_backbone, cfg.pretrained) == ("a.ckpt", "b.ckpt")  # upstream spellings
    with no_init_parameters():
        source = create_model("yolov3_tiny", 80, (416, 416))
    for _, param in source.parameters_and_names():
        param.set_data(ms.Tensor(np.full(param.shape, 0.25, np.float32)))
    path = save_checkpoint(str(tmp_path / "yolo.ckpt"), source)
    net = create_model("yolov3_tiny", 80, (416, 416))
    lines = []
    loaded, kept = load_pretrained(net, path, lines.append, prefix="backbone.")
    assert len(loaded) == 55 and sorted(kept) == ["head_stride16.bias", "head_stride16.weight",
                                                  "head_stride32.bias", "head_stride32.weight"]
    assert lines == [f"loaded pretrained weights from {path}: 55 tensors loaded; 4 re-initialised "
                     f"(head_stride16, head_stride32)"]
    params = dict(net.parameters_and_names())
    assert (params["backbone.conv0.conv.weight"].asnumpy() == 0.25).all()
    assert not (params["head_stride32.weight"].asnumpy() == 0.25).any()
    with pytest.raises(CheckpointError, match="fits nothing of the network's backbone"):
        load_pretrained(create_model("tinydarknet", 10), path, lines.append, prefix="backbone.")


def test_pth_conversion_does_not_need_torch(timm_files, tmp_path):
    """The .pth reader rebuilds tensors itself: it works where torch cannot be imported."""
    _, pth_path, _, _ = timm_files
    out = tmp_path / "no_torch.ckpt"
    script = ("import runpy, sys; sys.modules['torch'] = None; "
              f"sys.argv = ['convert_weights.py', '--source=timm', '--model=mobilenetv1', "
              f"'--input={pth_path}', '--output={out}']; "
              "runpy.run_path('convert_weights.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tensors, meta = read_checkpoint(str(out))
    assert meta["model"] == "mobilenetv1" and "features.26.bn.moving_variance" in tensors


# ----------------------------------------------------------------------------- letterbox in use

def test_decode_in_image_maps_letterboxed_boxes_back():
    from src.datasets.letterbox import decode_in_image
    from src.detections import Detections
    from src.registry import Preprocessing

    seen = []

    def decode(outputs, width, height):  # a box covering the image part of the canvas
        seen.append((width, height))
        return Detections(np.array([[0.0, 52.0, 416.0, 364.0]], np.float32),
                          np.array([0.9], np.float32), np.array([3]))

    dets = decode_in_image(decode, [], 640, 480, (416, 416), Preprocessing(resize_mode="letterbox"))
    assert seen == [(416.0, 416.0)]  # decoded on the canvas
    np.testing.assert_allclose(dets.boxes, [[0, 0, 640, 480]], atol=1e-4)
    assert dets.classes.tolist() == [3]
    plain = decode_in_image(decode, [], 640, 480, (416, 416), Preprocessing(resize_mode="stretch"))
    assert seen[-1] == (640.0, 480.0) and plain.boxes.tolist() == [[0.0, 52.0, 416.0, 364.0]]


def test_coco_letterbox_input_is_the_letterbox_normalised():
    from src.datasets.coco import preprocess_for_inference
    from src.registry import Preprocessing

    image = np.random.default_rng(5).integers(0, 256, (60, 120, 3), np.uint8)
    pre = Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), resize_mode="letterbox",
                        letterbox_fill=0.5)
    got = preprocess_for_inference(image, (64, 64), pre)
    canvas = letterbox(image.astype(np.float32), (64, 64), 127.5)[0]
    np.testing.assert_allclose(got, canvas.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert np.all(got[:, :16] == 0.5) and np.all(got[:, 48:] == 0.5)  # grey bands above/below


@pytest.mark.slow
def test_converted_yolov3_tiny_detects_and_evaluates_letterboxed_without_a_config(
        yolo_weights, demo_data, tmp_path, capsys):
    """No --config_path: the converted checkpoint's config gives the 416 letterbox, RGB/255."""
    import shutil
    converted = tmp_path / "yolov3_tiny_darknet.ckpt"
    code, _, err = run_cli(["--source=darknet", "--model=yolov3_tiny", f"--input={yolo_weights}",
                            f"--output={converted}"], capsys)
    assert code == 0, err
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((demo_data["coco"] / "val2017").glob("*.jpg"))[:2]:
        shutil.copy(path, photos)
    line = "preprocessing: letterbox to 416x416 (fill 0.5), mean [0, 0, 0], std [255, 255, 255]"

    detect = subprocess.run([sys.executable, "detect.py", f"--checkpoint_path={converted}",
                             f"--input={photos}", f"--output={tmp_path / 'out'}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert detect.returncode == 0, detect.stdout[-2000:] + detect.stderr[-2000:]
    assert line in detect.stdout
    with open(tmp_path / "out" / "detections.json", encoding="utf-8") as f:
        found = {r["file"]: r for r in json.load(f)}
    assert sorted(found) == sorted(p.name for p in photos.iterdir())

    # eval.py over the same two images: its boxes (score >= 0.001) hold detect.py's (>= 0.3).
    ann = tmp_path / "ann.json"
    with open(demo_data["coco"] / "annotations" / "instances_val2017.json", encoding="utf-8") as f:
        doc = json.load(f)
    doc["images"] = [img for img in doc["images"] if img["file_name"] in found]
    ids = {img["id"]: img["file_name"] for img in doc["images"]}
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
    ann.write_text(json.dumps(doc), encoding="utf-8")
    evaluate = subprocess.run([sys.executable, "eval.py", f"--checkpoint_path={converted}",
                               f"--data.eval_dir={photos}", f"--data.eval_ann_file={ann}",
                               f"--output_dir={tmp_path / 'eval'}", "--data.num_workers=1"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert evaluate.returncode == 0, evaluate.stdout[-2000:] + evaluate.stderr[-2000:]
    assert line in evaluate.stdout and "mAP" in evaluate.stdout
    predictions = next((tmp_path / "eval" / "predictions").glob("*.json"))
    with open(predictions, encoding="utf-8") as f:
        results = json.load(f)
    compared = 0
    for image_id, name in ids.items():
        theirs = np.array([r["bbox"] for r in results if r["image_id"] == image_id], np.float64)
        for record in found[name]["detections"]:
            x, y, w, h = record["bbox"]
            assert 0 <= x and x + w <= found[name]["width"] + 0.01
            assert 0 <= y and y + h <= found[name]["height"] + 0.01
            assert np.abs(theirs - [x, y, w, h]).max(axis=1).min() < 0.05, (name, record)
            compared += 1
    assert compared > 0


@pytest.mark.slow
def test_converted_classifier_exports_and_deploys_without_a_config(converted_tiny, demo_data,
                                                                  app_build_dir, tmp_path):
    """Converted Tiny-DarkNet: export.py (ONNX + MINDIR, numeric check) and the C++ app, no config."""
    converted = converted_tiny
    stem = tmp_path / "export" / "tiny"
    for fmt in ("ONNX", "MINDIR"):
        proc = subprocess.run([sys.executable, "export.py", f"--ckpt_file={converted}",
                               f"--file_name={stem}", f"--file_format={fmt}"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"using the config stored in {converted}" in proc.stdout, proc.stdout[-2000:]
    sidecar = json.loads((tmp_path / "export" / "tiny.onnx.json").read_text())
    assert sidecar["config"]["num_classes"] == 1000
    assert sidecar["config"]["net"]["final_conv"] == "linear"
    assert sidecar["config"]["preprocess"]["std"] == [255.0, 255.0, 255.0]
    val = tmp_path / "val"
    for folder in sorted((demo_data["imagenet"] / "val").iterdir())[:3]:
        (val / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:2]:
            (val / folder.name / image.name).write_bytes(image.read_bytes())
    outputs = {}
    for backend in ("cpu", "python"):
        proc = subprocess.run(["bash", "scripts/run_infer_310.sh", f"{stem}.mindir", str(val),
                               str(tmp_path / f"labels_{backend}.txt"), f"--backend={backend}",
                               f"--output_dir={tmp_path / 'runs'}", f"--run_name={backend}"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, INFER_BUILD_DIR=str(app_build_dir)))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results = sorted((tmp_path / "runs" / backend / "result_Files").glob("*.bin"))
        assert len(results) == 6
        outputs[backend] = {r.name: np.fromfile(r, dtype=np.float32) for r in results}
    # The C++ app (OpenCV DNN on the ONNX) and the Python runner (MindSpore on the MINDIR)
    # give the same 1000 logits per image.
    assert outputs["cpu"].keys() == outputs["python"].keys()
    for name, logits in outputs["cpu"].items():
        assert logits.shape == (1000,)
        np.testing.assert_allclose(logits, outputs["python"][name], rtol=1e-4, atol=1e-4)
