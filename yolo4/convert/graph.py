"""Small ONNX graph passes used by the exporter (pure ``onnx``; no torch, no onnxruntime).

- :func:`fuse_mish`: ``Mul(x, Tanh(Softplus(x)))`` -> ONNX ``Mish`` (opset >= 18 only).
- :func:`decode_nodes`: the nodes after the last convolutions (the in-graph YOLO decode), which the
  FP16 conversion keeps in float32.
- :func:`op_counts`: ``{op_type: count}`` of the main graph.
"""

from collections import Counter
from typing import Dict, List

import onnx
from onnx import helper

#: first ai.onnx opset with the ``Mish`` operator (https://onnx.ai/onnx/operators/onnx__Mish.html)
MISH_MIN_OPSET = 18


def op_counts(model: onnx.ModelProto) -> Dict[str, int]:
    """Return ``{op_type: number of nodes}`` of the model's main graph."""
    return dict(Counter(n.op_type for n in model.graph.node))


def onnx_opset(model: onnx.ModelProto) -> int:
    """Version of the default (ai.onnx) domain imported by ``model``."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ValueError("model imports no ai.onnx opset")


def _consumers(graph: onnx.GraphProto) -> Dict[str, List[onnx.NodeProto]]:
    cons: Dict[str, List[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                cons.setdefault(name, []).append(node)
    return cons


def fuse_mish(model: onnx.ModelProto) -> int:
    """Replace every ``Mul(x, Tanh(Softplus(x)))`` chain with one ``Mish(x)`` node, in place.

    The PyTorch TorchScript exporter always writes ``torch.nn.Mish`` / ``F.mish`` (and a hand-written
    ``x * tanh(softplus(x))``) as the three-node decomposition, at every opset. ONNX has a ``Mish``
    operator from opset 18 on (``mish(x) = x * tanh(softplus(x))``, identical maths); this pass puts
    it back so runtimes with a fused Mish kernel (TensorRT >= 10 parses it) run one op instead of
    three. The intermediate Softplus/Tanh outputs must have no other consumer and not be graph
    outputs, otherwise the chain is left alone.

    Args:
        model: ONNX model whose ai.onnx opset is >= 18 (modified in place).

    Returns:
        Number of chains fused.

    Raises:
        ValueError: the model's opset is below 18 (``Mish`` does not exist there).
    """
    if onnx_opset(model) < MISH_MIN_OPSET:
        raise ValueError(f"ONNX Mish needs opset >= {MISH_MIN_OPSET}, model has {onnx_opset(model)}")
    graph = model.graph
    nodes = list(graph.node)
    cons = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    taken = {n.name for n in nodes}
    remove = set()  # indices of Softplus/Tanh nodes to drop
    replace = {}  # index of Mul node -> Mish node
    for i, mul in enumerate(nodes):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for t_idx in (0, 1):
            ti = producer.get(mul.input[t_idx])
            x = mul.input[1 - t_idx]
            if ti is None or nodes[ti].op_type != "Tanh":
                continue
            tanh = nodes[ti]
            si = producer.get(tanh.input[0])
            if si is None or nodes[si].op_type != "Softplus" or nodes[si].input[0] != x:
                continue
            sp = nodes[si]
            if (len(cons.get(sp.output[0], [])) != 1 or len(cons.get(tanh.output[0], [])) != 1
                    or sp.output[0] in graph_outputs or tanh.output[0] in graph_outputs
                    or si in remove or ti in remove):
                continue
            remove.update((si, ti))
            name = f"{mul.name}_mish" if mul.name else f"yolo4_mish_{i}"
            while name in taken:
                name += "_"
            taken.add(name)
            replace[i] = helper.make_node("Mish", [x], [mul.output[0]], name=name)
            break
    if not replace:
        return 0
    new_nodes = [replace.get(i, node) for i, node in enumerate(nodes) if i not in remove]
    del graph.node[:]
    graph.node.extend(new_nodes)
    return len(replace)


def has_mish_decomposition(model: onnx.ModelProto) -> bool:
    """True if the graph has a ``Mul(x, Tanh(Softplus(x)))`` chain."""
    producer = {out: node for node in model.graph.node for out in node.output}
    for mul in model.graph.node:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for t_idx in (0, 1):
            tanh = producer.get(mul.input[t_idx])
            if tanh is not None and tanh.op_type == "Tanh":
                sp = producer.get(tanh.input[0])
                if sp is not None and sp.op_type == "Softplus" and sp.input[0] == mul.input[1 - t_idx]:
                    return True
    return False


def decode_nodes(model: onnx.GraphProto, barrier_ops=("Conv", "ConvTranspose")) -> List[str]:
    """Names of the nodes from which no path leads to a convolution (the in-graph YOLO decode).

    In a darknet YOLO graph the last convolution of each head feeds its ``[yolo]`` decode (sigmoid,
    exp of the box sizes, grid offsets, anchor and stride products, objectness x class product);
    every node after those convolutions, and every shape/constant node that only feeds them, has no
    path to another ``Conv``. Those are the nodes returned (convolutions themselves never are).

    Args:
        model: ONNX model (or its graph). Nodes without a name get one (``"yolo4_node_<i>"``) in place so
            they can be addressed by name.

    Returns:
        Node names, in graph order.
    """
    graph = model.graph if isinstance(model, onnx.ModelProto) else model
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"yolo4_node_{i}"
    nodes = list(graph.node)
    consumers: Dict[str, List[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(i)
    leads_to_conv = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):  # ONNX nodes are topologically sorted
        leads_to_conv[i] = any(nodes[c].op_type in barrier_ops or leads_to_conv[c]
                               for out in nodes[i].output for c in consumers.get(out, []))
    return [n.name for i, n in enumerate(nodes) if n.op_type not in barrier_ops and not leads_to_conv[i]]
