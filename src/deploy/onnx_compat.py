"""Rewrite MindSpore ONNX exports: faster on onnxruntime, and readable by OpenCV's DNN.

MindSpore writes opset-11 graphs. ``export.py`` runs :func:`normalize_onnx_file`
on every ONNX export; its rewrites are exact, cost onnxruntime nothing or make
it faster, and remove patterns that OpenCV's ONNX importer (4.6, the Debian 12
version used by the C++ CPU app) rejects:

* ``Max(Mul(x, a), x)`` (how MindSpore writes LeakyReLU) becomes one
  ``LeakyRelu(x, alpha=a)``: onnxruntime fuses it into the convolution before
  it instead of running two element-wise passes (Tiny-DarkNet at batch 1:
  8.6 -> 6.4 ms), and OpenCV reads it as its ReLU layer. Bit-exact for
  0 <= a < 1;
* ``Min(x, c)`` / ``Max(x, c)`` with a constant operand (YOLO's decode head):
  OpenCV treats them as element-wise layers needing two computed inputs;
* ``Resize`` without an explicit ``mode`` attribute: OpenCV reads it without
  the ONNX default ("nearest");
* ``Add/Sub/Mul/Div(x, c)`` where the constant ``c`` broadcasts over more than
  one axis of a 5-D ``x`` (YOLO's grid offsets and anchor sizes): OpenCV 4.6
  fails at run time (``shape_utils.hpp: total``). The constant is stored
  already broadcast to the output's static shape, which is exact.
* ``Conv`` over an input axis of length 1 whose output axis has length 1 too
  (MobileNetV1's last depthwise 3x3 convolutions at 32x32, on 1x1 maps): only
  one tap of the kernel along that axis meets data, the others meet padding,
  so the kernel is cut to that tap (with no padding or stride on that axis).
  OpenCV 4.10-4.13's depthwise 3x3 kernel computes such convolutions wrong (off by
  units, or garbage: it reads outside the row), and onnxruntime does fewer
  multiplications. Exact but for the order of the additions.

One pattern is left in the export, because its OpenCV form would slow
onnxruntime down: ``Clip(x, min, max)`` with min/max as inputs (MobileNetV1's
ReLU6), which onnxruntime fuses into the convolution and OpenCV < 4.7 rejects
(it reads only the opset-6 attributes). :func:`write_opencv_copy` (and
``python -m src.deploy.onnx_compat MODEL.onnx COPY.onnx``, which
``scripts/run_infer_310.sh --backend=cpu`` runs) writes a copy for OpenCV with
each such Clip rebuilt from Relu/Sub: MobileNetV1 at batch 1 on onnxruntime
took 8.1 ms with Clip and 11.3 ms with its replacement.

The replacements use only Relu/Sub/Add, which every runtime supports:
``min(x, c) = x - relu(x - c)``, ``max(x, c) = c + relu(x - c)`` and
``clip(x, lo, hi) = max(min(x, hi), lo)``. For ReLU6 (lo = 0) the result is
bit-exact for activations below 2**24; otherwise it differs by at most one
rounding step. The export check that follows (onnxruntime vs the checkpoint
network) covers the rewritten file.

The graph outputs are also renamed ``output_0``, ``output_1``, ... in ONNX
order. OpenCV lists a network's outputs by layer name, not in ONNX order, so
the C++ app orders them by these names (YOLO has two outputs of different size).
"""
import os
import re
import shutil
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np


def _constants(graph) -> Dict[str, np.ndarray]:
    """Values of the graph's initializers and Constant-node outputs, by name."""
    from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


class _Rewriter:
    """Builds replacement nodes with unique output names."""

    def __init__(self, graph):
        self.graph = graph
        self.count = 0

    def _name(self, base: str, tag: str) -> str:
        self.count += 1
        return f"{base}__cv{tag}{self.count}"

    def node(self, op: str, inputs: List[str], output: Optional[str], base: str, tag: str):
        from onnx import helper  # pylint: disable=import-outside-toplevel
        out = output or self._name(base, tag)
        return helper.make_node(op, inputs, [out], name=self._name(base, op)), out

    def min_const(self, x: str, c: str, out: Optional[str], base: str) -> List:
        """out = x - relu(x - c)."""
        sub, d = self.node("Sub", [x, c], None, base, "d")
        relu, r = self.node("Relu", [d], None, base, "r")
        final, _ = self.node("Sub", [x, r], out, base, "o")
        return [sub, relu, final]

    def max_const(self, x: str, c: str, out: Optional[str], base: str) -> List:
        """out = c + relu(x - c); for c == 0 simply relu(x)."""
        sub, d = self.node("Sub", [x, c], None, base, "d")
        relu, r = self.node("Relu", [d], None, base, "r")
        final, _ = self.node("Add", [r, c], out, base, "o")
        return [sub, relu, final]

    def relu(self, x: str, out: Optional[str], base: str) -> List:
        node, _ = self.node("Relu", [x], out, base, "o")
        return [node]


def _fold_leaky_relu(graph, consts: Dict[str, np.ndarray]) -> int:
    """Replace each ``Max(Mul(x, a), x)`` (``a`` a constant in [0, 1)) by ``LeakyRelu(x, a)``.

    For such ``a``, ``a * x <= x`` exactly when ``x >= 0`` (rounding is monotone), so
    the maximum picks what LeakyRelu computes, bit for bit.
    """
    from onnx import helper  # pylint: disable=import-outside-toplevel
    producers = {out: node for node in graph.node for out in node.output}
    consumers: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    graph_outputs = {out.name for out in graph.output}
    replaced, folded = {}, set()
    for node in graph.node:
        if node.op_type != "Max" or len(node.input) != 2:
            continue
        for scaled, x in (tuple(node.input), tuple(reversed(node.input))):
            mul = producers.get(scaled)
            if (mul is None or mul.op_type != "Mul" or x not in mul.input or id(mul) in folded
                    or consumers.get(scaled) != 1 or scaled in graph_outputs):
                continue
            alpha_name = mul.input[1] if mul.input[0] == x else mul.input[0]
            alpha = consts.get(alpha_name)
            if alpha is None or alpha.size != 1 or not 0.0 <= float(alpha.reshape(-1)[0]) < 1.0:
                continue
            replaced[id(node)] = helper.make_node(
                "LeakyRelu", [x], [node.output[0]], name=node.name or node.output[0],
                alpha=float(alpha.reshape(-1)[0]))
            folded.add(id(mul))
            break
    if replaced:
        nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in folded]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(replaced)


def _rewrite_nodes(model, clip: bool) -> int:
    """The node rewrites of the module docstring; ``clip``: also rebuild Clip from Relu/Sub."""
    from onnx import helper  # pylint: disable=import-outside-toplevel
    graph = model.graph
    consts = _constants(graph)
    changed = _fold_leaky_relu(graph, consts)
    rw = _Rewriter(graph)
    new_nodes, rewritten = [], 0

    def is_const(name: str) -> bool:
        return bool(name) and name in consts

    def is_zero(name: str) -> bool:
        return is_const(name) and consts[name].size == 1 and float(consts[name].reshape(-1)[0]) == 0.0

    for node in graph.node:
        base = node.name or node.output[0]
        if clip and node.op_type == "Clip" and len(node.input) > 1:
            x = node.input[0]
            lo = node.input[1] if len(node.input) > 1 else ""
            hi = node.input[2] if len(node.input) > 2 else ""
            if (lo and not is_const(lo)) or (hi and not is_const(hi)):
                new_nodes.append(node)  # data-dependent bounds: leave as is
                continue
            out = node.output[0]
            if not lo and not hi:
                new_nodes.append(helper.make_node("Identity", [x], [out], name=base))
            elif not lo:
                new_nodes += rw.min_const(x, hi, out, base)
            elif not hi:
                new_nodes += rw.relu(x, out, base) if is_zero(lo) else rw.max_const(x, lo, out, base)
            else:
                upper = rw.min_const(x, hi, None, base)
                clipped = upper[-1].output[0]
                lower = rw.relu(clipped, out, base) if is_zero(lo) else rw.max_const(clipped, lo, out, base)
                new_nodes += upper + lower
            rewritten += 1
        elif node.op_type in ("Min", "Max") and len(node.input) == 2 and \
                sum(is_const(i) for i in node.input) == 1:
            x, c = (node.input[1], node.input[0]) if is_const(node.input[0]) else tuple(node.input)
            out = node.output[0]
            if node.op_type == "Min":
                new_nodes += rw.min_const(x, c, out, base)
            elif is_zero(c):
                new_nodes += rw.relu(x, out, base)
            else:
                new_nodes += rw.max_const(x, c, out, base)
            rewritten += 1
        elif node.op_type == "Resize" and not any(a.name == "mode" for a in node.attribute):
            node.attribute.append(helper.make_attribute("mode", "nearest"))  # the ONNX default
            new_nodes.append(node)
            rewritten += 1
        else:
            new_nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
    changed += rewritten
    shapes = _LazyShapes(model)
    changed += _cut_kernels_over_unit_axes(graph, consts, shapes)
    changed += _materialize_broadcast_constants(model, consts, shapes)
    changed += _name_outputs(graph)
    if changed:
        _drop_unused_initializers(graph)
    return changed


def make_portable(model) -> int:
    """The export's rewrites of ``model`` (an ``onnx.ModelProto``), in place; returns the nodes changed."""
    return _rewrite_nodes(model, clip=False)


def make_opencv_compatible(model) -> int:
    """:func:`make_portable` plus Clip rebuilt for OpenCV < 4.7, in place; returns the nodes changed."""
    return _rewrite_nodes(model, clip=True)


OUTPUT_NAME = "output_{}"  # the C++ app (backend_opencv.cc) orders outputs by this pattern


def outputs_in_graph_order(names: Sequence[str]) -> List[str]:
    """OpenCV DNN's output layer names in the ONNX graph's output order.

    The export names output ``i`` ``output_i`` (:func:`make_portable`), and OpenCV names
    an output layer after its tensor; names of files exported otherwise keep the order given.
    """
    matches = [re.fullmatch(OUTPUT_NAME.format(r"(\d+)"), name) for name in names]
    if not all(matches):
        return list(names)
    return [name for _, name in sorted(zip((int(m.group(1)) for m in matches), names))]


class _LazyShapes:
    """Fully known tensor shapes of ``model`` by name (ONNX shape inference, run on first use).

    The rewrites that use it keep every tensor's shape, so one inference serves them all.
    """

    def __init__(self, model):
        self.model = model
        self._shapes: Optional[Dict[str, List[int]]] = None

    def get(self, name: str) -> Optional[List[int]]:
        if self._shapes is None:
            from onnx import shape_inference  # pylint: disable=import-outside-toplevel
            inferred = shape_inference.infer_shapes(_without_large_weights(self.model)).graph
            self._shapes = {}
            for info in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
                dims = info.type.tensor_type.shape.dim
                if dims and all(d.HasField("dim_value") for d in dims):
                    self._shapes[info.name] = [d.dim_value for d in dims]
        return self._shapes.get(name)


def _without_large_weights(model, max_elements: int = 4096):
    """A copy of ``model`` whose large initializers are graph inputs of the same type.

    Shape inference serializes the model it is given: VGG16's 528 MB of weights cost it
    5 s. It needs their shapes only; small initializers (Reshape targets) keep their values.
    """
    from onnx import helper  # pylint: disable=import-outside-toplevel
    graph = model.graph
    large = [init for init in graph.initializer if int(np.prod(init.dims)) > max_elements]
    if not large:
        return model
    small = [init for init in graph.initializer if int(np.prod(init.dims)) <= max_elements]
    listed = {i.name for i in graph.input}  # older IRs list initializers as inputs too
    inputs = list(graph.input) + [helper.make_tensor_value_info(init.name, init.data_type, init.dims)
                                  for init in large if init.name not in listed]
    light = helper.make_model(helper.make_graph(graph.node, graph.name, inputs, graph.output, small,
                                                value_info=graph.value_info),
                              opset_imports=model.opset_import)
    light.ir_version = model.ir_version
    return light


def _ints_attribute(node, name: str, default: List[int]) -> List[int]:
    found = [list(a.ints) for a in node.attribute if a.name == name]
    return found[0] if found else list(default)


def _conv_pads(node, kernel: Sequence[int], in_sizes: List[int],
               out_sizes: List[int]) -> Optional[List[int]]:
    """The explicit ``pads`` (begins, then ends) of Conv ``node``; None for an unknown ``auto_pad``."""
    rank = len(in_sizes)
    modes = [a.s.decode() for a in node.attribute if a.name == "auto_pad"]
    mode = modes[0] if modes else "NOTSET"
    if mode == "NOTSET":
        return _ints_attribute(node, "pads", [0] * (2 * rank))
    if mode == "VALID":
        return [0] * (2 * rank)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        return None
    strides = _ints_attribute(node, "strides", [1] * rank)
    dilations = _ints_attribute(node, "dilations", [1] * rank)
    begins, ends = [], []
    for size, out, k, s, d in zip(in_sizes, out_sizes, kernel, strides, dilations):
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if mode == "SAME_UPPER" else total - small)
        ends.append(total - begins[-1])
    return begins + ends


def _cut_kernels_over_unit_axes(graph, consts: Dict[str, np.ndarray], shapes: _LazyShapes) -> int:
    """Cut each Conv kernel axis that slides over a length-1 input axis (and makes a length-1
    output axis) to the one tap that meets the data; returns the Conv nodes changed."""
    from onnx import helper, numpy_helper  # pylint: disable=import-outside-toplevel
    changed = 0
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        in_shape, out_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
        weight = consts[node.input[1]]
        if in_shape is None or out_shape is None or weight.ndim != len(in_shape):
            continue
        in_sizes, out_sizes = in_shape[2:], out_shape[2:]
        pads = _conv_pads(node, weight.shape[2:], in_sizes, out_sizes)
        if pads is None:
            continue
        rank = len(in_sizes)
        strides = _ints_attribute(node, "strides", [1] * rank)
        dilations = _ints_attribute(node, "dilations", [1] * rank)
        taps = {}
        for axis in range(rank):
            k, d, begin = weight.shape[2 + axis], dilations[axis], pads[axis]
            # Output 0 reads input -begin + j * d through tap j: the data (index 0) meets tap begin / d.
            if (in_sizes[axis] == 1 and out_sizes[axis] == 1 and k > 1 and begin % d == 0
                    and 0 <= begin // d < k):
                taps[axis] = begin // d
        if not taps:
            continue
        cut = weight
        for axis, tap in taps.items():
            cut = np.take(cut, [tap], axis=2 + axis)
            pads[axis] = pads[rank + axis] = 0
            strides[axis] = dilations[axis] = 1
        cut_name = f"{node.input[1]}__cut{changed}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(cut), cut_name))
        consts[cut_name] = cut
        node.input[1] = cut_name
        kept = [a for a in node.attribute if a.name not in
                ("auto_pad", "pads", "strides", "dilations", "kernel_shape")]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("kernel_shape", list(cut.shape[2:])),
                                      helper.make_attribute("pads", pads),
                                      helper.make_attribute("strides", strides),
                                      helper.make_attribute("dilations", dilations)])
        changed += 1
    return changed


def _materialize_broadcast_constants(model, consts: Dict[str, np.ndarray], shapes: _LazyShapes) -> int:
    """Replace each broadcasting non-scalar constant of a 5-D element-wise op by its full-shape copy."""
    from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
    graph = model.graph
    candidates = [node for node in graph.node if node.op_type in ("Add", "Sub", "Mul", "Div")
                  and any(name in consts and consts[name].size > 1 for name in node.input)]
    if not candidates:
        return 0
    changed = 0
    for node in candidates:
        out_shape = shapes.get(node.output[0])
        if out_shape is None or len(out_shape) < 5:  # 4-D broadcasting works in OpenCV
            continue
        for position, name in enumerate(node.input):
            value = consts.get(name)
            if value is None or value.size <= 1 or list(value.shape) == out_shape:
                continue
            full = np.ascontiguousarray(np.broadcast_to(value, out_shape))
            full_name = f"{name}__cvfull{changed}"
            graph.initializer.append(numpy_helper.from_array(full, full_name))
            node.input[position] = full_name
            changed += 1
    return changed


def _name_outputs(graph) -> int:
    """Rename graph output ``i`` to ``output_i`` (in its producer and consumers too)."""
    renames = {out.name: OUTPUT_NAME.format(i) for i, out in enumerate(graph.output)
               if out.name != OUTPUT_NAME.format(i)}
    if not renames:
        return 0
    taken = {name for node in graph.node for name in list(node.input) + list(node.output)}
    taken |= {init.name for init in graph.initializer} | {i.name for i in graph.input}
    clash = (taken - set(renames)) & set(renames.values())
    if clash:
        from src.deploy.common import DeployError  # pylint: disable=import-outside-toplevel
        raise DeployError(f"cannot name the ONNX outputs output_<i> for OpenCV: {sorted(clash)} "
                          f"already names another tensor of the graph")
    for node in graph.node:
        for field in (node.input, node.output):
            for position, name in enumerate(field):
                if name in renames:
                    field[position] = renames[name]
    for out in graph.output:
        out.name = renames.get(out.name, out.name)
    return len(renames)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def _save_beside(model, path: str, mode_of: str) -> None:
    """Check ``model`` and write it to ``path`` through a temporary file (with ``mode_of``'s mode)."""
    import onnx  # pylint: disable=import-outside-toplevel
    onnx.checker.check_model(model)
    tmp = path + ".compat.tmp"
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, os.stat(mode_of).st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def normalize_onnx_file(path: str) -> int:
    """Apply the export's rewrites (:func:`make_portable`) to the file at ``path``; return the nodes changed."""
    import onnx  # pylint: disable=import-outside-toplevel
    model = onnx.load(path)
    changed = make_portable(model)
    if changed:
        # MindSpore writes exports read-only: save beside it and rename over it.
        _save_beside(model, path, path)
    return changed


def write_opencv_copy(path: str, copy_path: str) -> str:
    """The ONNX file OpenCV DNN should run for ``path``: ``path`` itself when OpenCV 4.6
    reads it as it is, else ``copy_path``, written with :func:`make_opencv_compatible`
    (and the export's ``.json`` spec beside it, which the C++ app reads)."""
    import onnx  # pylint: disable=import-outside-toplevel
    model = onnx.load(path)
    if not make_opencv_compatible(model):
        return path
    folder = os.path.dirname(os.path.abspath(copy_path))
    os.makedirs(folder, exist_ok=True)
    _save_beside(model, copy_path, path)
    spec = path + ".json"
    if os.path.isfile(spec):
        shutil.copyfile(spec, copy_path + ".json")
    return copy_path


def main(argv=None) -> int:
    """``python -m src.deploy.onnx_compat MODEL.onnx COPY.onnx``: print the file OpenCV should run."""
    import argparse  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description="Write a copy of an ONNX export that OpenCV DNN "
                                     "below 4.7 reads (only when the export needs one); print "
                                     "the path of the file to run.")
    parser.add_argument("model", help="the ONNX export (python export.py ... --file_format=ONNX)")
    parser.add_argument("copy", help="where to write the copy when one is needed")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        print(f"error: ONNX file {args.model!r} not found", file=sys.stderr)
        return 2
    try:
        print(write_opencv_copy(args.model, args.copy))
    except Exception as exc:  # onnx raises its own exception types  pylint: disable=broad-except
        print(f"error: cannot rewrite {args.model!r} for OpenCV: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
