"""Darknet ``.cfg`` and ``.weights`` files.

A ``.weights`` file is a header (int32 major, minor, revision, then the
"images seen" counter: 8 bytes when ``major*10 + minor >= 2`` and both are
below 1000, else 4) followed by float32 values, per ``[convolutional]`` section
in cfg order: biases (BN beta when batch-normalised), then for BN layers the
scales (gamma), rolling means and rolling variances, then the weights
``[filters][channels/groups][size][size]`` (OIHW, MindSpore's layout).
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from src.pretrained import ConversionError

CFG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cfg")
# Darknet trains with cuDNN's BN epsilon; its CPU path and OpenCV (the reference
# the tests compare with) use 1e-6 at inference.
INFERENCE_BN_EPS = 1e-6
FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One ``[convolutional]`` section with its resolved input channels."""

    index: int          # layer index in the cfg (the [net] section not counted)
    in_channels: int
    filters: int
    size: int
    groups: int
    batch_normalize: bool
    activation: str

    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.filters, self.in_channels // self.groups, self.size, self.size)

    def float_count(self) -> int:
        return self.filters * (4 if self.batch_normalize else 1) + int(np.prod(self.weight_shape()))


def parse_cfg(path: str) -> List[Tuple[str, Dict[str, str]]]:
    """Sections ``(name, {key: value})`` of a Darknet cfg, in order."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"cannot read Darknet cfg {path!r} ({exc}); pass the network's "
                              f".cfg with --cfg") from None
    sections = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().lower(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise ConversionError(f"Darknet cfg {path!r} line {number} is not 'key=value' or "
                                  f"'[section]': {raw.strip()!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise ConversionError(f"{path!r} is not a Darknet cfg (it must start with a [net] section)")
    return sections


def conv_layers(path: str) -> List[ConvSpec]:
    """The convolutions of a cfg with their input channels, following routes and pools."""
    sections = parse_cfg(path)
    net = sections[0][1]
    channels_in = int(net.get("channels", 3))
    out_channels: List[int] = []
    convs = []

    def as_int(options, key, default):
        try:
            return int(options.get(key, default))
        except ValueError:
            raise ConversionError(f"Darknet cfg {path!r}: {key}={options[key]!r} is not an "
                                  f"integer") from None

    for index, (name, options) in enumerate(sections[1:]):
        previous = out_channels[-1] if out_channels else channels_in
        if name in ("convolutional", "conv"):
            spec = ConvSpec(index, previous, as_int(options, "filters", 1),
                            as_int(options, "size", 1), as_int(options, "groups", 1),
                            bool(as_int(options, "batch_normalize", 0)),
                            options.get("activation", "logistic"))
            convs.append(spec)
            channels = spec.filters
        elif name == "route":
            layers = [int(v) for v in options.get("layers", "").split(",") if v.strip()]
            try:
                channels = sum(out_channels[i if i >= 0 else index + i] for i in layers)
            except IndexError:
                raise ConversionError(f"Darknet cfg {path!r}: route layer {index} refers to a "
                                      f"layer that does not exist") from None
        elif name in ("maxpool", "upsample", "yolo", "avgpool", "softmax", "cost", "dropout",
                      "shortcut", "region"):
            channels = previous
        else:
            raise ConversionError(f"Darknet cfg {path!r}: layer type [{name}] is not supported")
        out_channels.append(channels)
    return convs


def header_bytes(major: int, minor: int) -> int:
    """Header length: 3 int32 + the images-seen counter (size_t from format 0.2 on)."""
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    return 12 + (8 if wide else 4)


def read_weights(path: str, convs: List[ConvSpec], bn_eps_source: float, bn_eps_target: float,
                 cfg_path: str = "") -> List[Dict[str, np.ndarray]]:
    """Per convolution ``{bias, weight[, gamma, moving_mean, moving_variance]}``.

    The file must hold exactly the floats the cfg needs. The moving variance
    absorbs the epsilon difference (``var + eps_source - eps_target``), so the
    target's BN computes exactly what the source's did.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConversionError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) < 16:
        raise ConversionError(f"{path!r} ({len(data)} bytes) is too short to be a Darknet "
                              f".weights file")
    major, minor, _ = np.frombuffer(data[:12], "<i4")
    start = header_bytes(int(major), int(minor))
    body = len(data) - start
    needed = sum(c.float_count() for c in convs)
    cfg_note = f" for {os.path.basename(cfg_path)}" if cfg_path else ""
    if body % FLOAT_BYTES or body // FLOAT_BYTES != needed:
        found = body / FLOAT_BYTES
        kind = "truncated" if found < needed else "too long"
        raise ConversionError(
            f"{path!r} holds {found:g} floats after its {start}-byte header but the cfg"
            f"{cfg_note} needs {needed} ({kind}: a damaged download, or the .weights of "
            f"another network; check --model and --cfg)")
    floats = np.frombuffer(data, "<f4", offset=start).astype(np.float32)
    layers, offset = [], 0

    def take(count):
        nonlocal offset
        chunk = floats[offset:offset + count]
        offset += count
        return chunk

    for conv in convs:
        n = conv.filters
        layer = {"bias": take(n)}
        if conv.batch_normalize:
            layer["gamma"] = take(n)
            layer["moving_mean"] = take(n)
            layer["moving_variance"] = (take(n).astype(np.float64) + bn_eps_source
                                        - bn_eps_target).astype(np.float32)
        layer["weight"] = take(int(np.prod(conv.weight_shape()))).reshape(conv.weight_shape())
        layers.append(layer)
    return layers


def cfg_path_for(name: str) -> Optional[str]:
    """The shipped official cfg ``name`` (``tiny.cfg``, ``yolov3-tiny.cfg``)."""
    return os.path.join(CFG_DIR, name)
