"""Rewrite MindSpore ONNX exports so that OpenCV's DNN importer accepts them too.

MindSpore writes opset-11 graphs. onnxruntime runs them as they are, but
OpenCV's ONNX importer (4.6, the Debian 12 version used by the C++ CPU app)
rejects a few patterns that the zoo's networks produce:

* ``Clip(x, min, max)`` with min/max as inputs (MobileNetV1's ReLU6): OpenCV
  < 4.7 only reads the opset-6 attributes;
* ``Min(x, c)`` / ``Max(x, c)`` with a constant operand (YOLO's decode head):
  OpenCV treats them as element-wise layers needing two computed inputs;
* ``Resize`` without an explicit ``mode`` attribute: OpenCV reads it without
  the ONNX default ("nearest");
* ``Add/Sub/Mul/Div(x, c)`` where the constant ``c`` broadcasts over more than
  one axis of a 5-D ``x`` (YOLO's grid offsets and anchor sizes): OpenCV 4.6
  fails at run time (``shape_utils.hpp: total``). The constant is stored
  already broadcast to the output's static shape, which is exact.

Each pattern is replaced by an equivalent built from Relu/Sub/Add, which every
runtime supports: ``min(x, c) = x - relu(x - c)``, ``max(x, c) = c + relu(x - c)``
and ``clip(x, lo, hi) = max(min(x, hi), lo)``. For ReLU6 (lo = 0) the result is
bit-exact for activations below 2**24; otherwise it differs by at most one
rounding step. The export check that follows (onnxruntime vs the checkpoint
network) covers the rewritten file.

The graph outputs are also renamed ``output_0``, ``output_1``, ... in ONNX
order. OpenCV lists a network's outputs by layer name, not in ONNX order, so
the C++ app orders them by these names (YOLO has two outputs of different size).
"""
import os
from typing import Dict, List, Optional

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


def make_opencv_compatible(model) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; return the number of nodes changed."""
    from onnx import helper  # pylint: disable=import-outside-toplevel
    graph = model.graph
    consts = _constants(graph)
    rw = _Rewriter(graph)
    new_nodes, changed = [], 0

    def is_const(name: str) -> bool:
        return bool(name) and name in consts

    def is_zero(name: str) -> bool:
        return is_const(name) and consts[name].size == 1 and float(consts[name].reshape(-1)[0]) == 0.0

    for node in graph.node:
        base = node.name or node.output[0]
        if node.op_type == "Clip" and len(node.input) > 1:
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
            changed += 1
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
            changed += 1
        elif node.op_type == "Resize" and not any(a.name == "mode" for a in node.attribute):
            node.attribute.append(helper.make_attribute("mode", "nearest"))  # the ONNX default
            new_nodes.append(node)
            changed += 1
        else:
            new_nodes.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    changed += _materialize_broadcast_constants(model, consts)
    changed += _name_outputs(graph)
    if changed:
        _drop_unused_initializers(graph)
    return changed


OUTPUT_NAME = "output_{}"  # the C++ app (backend_opencv.cc) orders outputs by this pattern


def _static_shapes(model) -> Dict[str, List[int]]:
    """Fully known tensor shapes of ``model`` by name (ONNX shape inference)."""
    from onnx import shape_inference  # pylint: disable=import-outside-toplevel
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {}
    for info in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _materialize_broadcast_constants(model, consts: Dict[str, np.ndarray]) -> int:
    """Replace each broadcasting non-scalar constant of a 5-D element-wise op by its full-shape copy."""
    from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
    graph = model.graph
    candidates = [node for node in graph.node if node.op_type in ("Add", "Sub", "Mul", "Div")
                  and any(name in consts and consts[name].size > 1 for name in node.input)]
    if not candidates:
        return 0
    shapes = _static_shapes(model)
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


def normalize_onnx_file(path: str) -> int:
    """Rewrite the ONNX file at ``path`` in place for OpenCV DNN; return the nodes changed."""
    import onnx  # pylint: disable=import-outside-toplevel
    model = onnx.load(path)
    changed = make_opencv_compatible(model)
    if changed:
        onnx.checker.check_model(model)
        # MindSpore writes exports read-only: save beside it and rename over it.
        tmp = path + ".compat.tmp"
        try:
            onnx.save(model, tmp)
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return changed
