"""FP32 ONNX -> FP16 ONNX with float32 graph inputs/outputs (for TensorRT strongly typed builds).

TensorRT 10 deprecates, and TensorRT 11 removes, the "weakly typed" builder flags (``FP16``) that let
TensorRT pick half precision itself: a strongly typed network runs each tensor in the type the ONNX
file gives it, so an FP16 engine needs an FP16 ONNX. The conversion itself is onnxconverter-common's
``float16.convert_float_to_float16`` (Microsoft's ONNX converter library; onnxruntime ships a copy of
the same algorithm as ``onnxruntime.transformers.float16``) with ``keep_io_types=True``: the graph input ``images`` and the outputs
``boxes``/``scores`` stay float32, with ``Cast`` nodes at the boundary, so the pre/post-processing and
the engine bindings are identical for FP32 and FP16 models.

What stays float32 (``node_block_list``): the YOLO decode after the last convolution of each head
(:func:`yolo4.convert.graph.decode_nodes`). Reasons:

- ``exp(t_w) * anchor_w`` overflows float16 (max 65504) for ``t_w > ~11 - log(anchor)``: one wild
  logit would make a box infinite; in float32 it stays finite.
- box centres in input pixels (0..608+) have a float16 spacing of 0.25-0.5 px; the decode in float32
  keeps the boxes as exact as the FP16 convolutions allow.
- the decode is a few element-wise ops on ~10-25 k x (5 + C) values; its cost is negligible beside
  the convolutions.

onnxconverter-common wraps each float32 node in its own Casts (fp16 -> fp32 before, fp32 -> fp16
after), so a chain of float32 nodes would still round its intermediate values to float16, and
(version 1.16) leaves the graph outputs float16 when the node producing them is kept float32.
:func:`convert_to_fp16` therefore finishes with two structural clean-ups on the Cast nodes only:
outputs get a final Cast to float32, and every ``fp32 -> Cast(fp16) -> Cast(fp32)`` round trip
is bypassed (:func:`remove_cast_round_trips`). No other node is touched.

onnxconverter-common's default op block list also keeps ``Resize`` (the ``[upsample]`` layers) in
float32 — its ``scales`` input must stay float32 and the converter casts whole nodes — so each
upsample costs two small Cast ops.

The backbone's Mish (``x * tanh(softplus(x))``) runs in FP16 and is overflow-safe: ``softplus(x)``
may round to ``inf`` for x > ~11 in float16, but ``tanh(inf) = 1`` and ``x * 1 = x``, the exact limit
of Mish; for very negative x, ``softplus -> 0`` and Mish -> ``x * 0 = 0`` (true value: ~x*e^x, under
float16 resolution). tests/test_convert_fp16.py runs FP16 graphs with real float16 arithmetic (ONNX's
numpy reference evaluator), including box logits that overflow a float16 ``exp``.
"""

import warnings
from typing import Dict, Iterable, List, Optional

import onnx
from onnx import TensorProto, helper

from .graph import decode_nodes


def _float_types(model: onnx.ModelProto) -> Dict[str, int]:
    """{tensor name: elem_type} for every typed tensor (inputs, outputs, value_info, initializers)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    for node in g.node:  # Cast outputs are typed by their attribute even when inference skipped them
        if node.op_type == "Cast":
            types.setdefault(node.output[0], _cast_to(node))
    return types


def _cast_to(node: onnx.NodeProto) -> Optional[int]:
    if node.op_type != "Cast":
        return None
    for a in node.attribute:
        if a.name == "to":
            return int(a.i)
    return None


def float32_outputs(model: onnx.ModelProto, names: Iterable[str]) -> int:
    """Make the named float16 graph outputs float32 by a final ``Cast``, in place; return how many."""
    names = set(names)
    count = 0
    for out in model.graph.output:
        if out.name not in names or out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = out.name + "_fp16"
        for node in model.graph.node:
            for i, o in enumerate(node.output):
                if o == out.name:
                    node.output[i] = inner
            for i, o in enumerate(node.input):
                if o == out.name:
                    node.input[i] = inner
        model.graph.node.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT,
                                                 name=out.name + "_to_fp32"))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
        count += 1
    return count


def remove_cast_round_trips(model: onnx.ModelProto) -> int:
    """Bypass every ``x (float32) -> Cast(to=float16) -> Cast(to=float32)`` pair, in place.

    Consumers of the second Cast read ``x`` directly (exact, and one rounding less); Casts left
    without consumers are deleted. Graph outputs keep their names (a Cast producing a graph output
    becomes ``Identity(x)``). Returns the number of pairs bypassed.
    """
    graph = model.graph
    types = _float_types(model)
    producer = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    rename: Dict[str, str] = {}
    identities: List[onnx.NodeProto] = []
    drop = set()
    for i, node in enumerate(graph.node):
        if _cast_to(node) != TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or _cast_to(first) != TensorProto.FLOAT16:
            continue
        src = first.input[0]
        if types.get(src) != TensorProto.FLOAT:
            continue
        if node.output[0] in graph_outputs:
            identities.append(helper.make_node("Identity", [src], [node.output[0]], name=node.name + "_identity"))
        else:
            rename[node.output[0]] = src
        drop.add(i)
    if not drop:
        return 0
    nodes = []
    for i, node in enumerate(graph.node):
        if i in drop:
            continue
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        nodes.append(node)
    nodes.extend(identities)
    # delete Casts whose outputs nobody reads any more
    while True:
        used = {name for n in nodes for name in n.input} | graph_outputs
        keep = [n for n in nodes if n.op_type != "Cast" or any(o in used for o in n.output)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    del graph.node[:]
    graph.node.extend(nodes)
    return len(drop)


def convert_to_fp16(model: onnx.ModelProto, keep_decode_fp32: bool = True,
                    extra_block_nodes: Optional[Iterable[str]] = None) -> onnx.ModelProto:
    """Return an FP16 copy of a float32 yolo4 ONNX model, graph I/O kept float32.

    Args:
        model: float32 ONNX model (input ``images`` float32 [B,3,H,W]; outputs ``boxes`` [B,N,4],
            ``scores`` [B,N,C]); not modified.
        keep_decode_fp32: keep the nodes after the last convolutions (YOLO decode) in float32
            (see the module docstring for why). False converts everything but the op block list.
        extra_block_nodes: further node names to keep in float32.

    Returns:
        New ``ModelProto``: float32 initializers/constants of the converted nodes in float16 (values
        clamped by the converter to 1e-7 <= |x| <= 1e4 — BN-folded darknet weights are far inside),
        ``Cast`` nodes at the fp32 <-> fp16 borders only, graph inputs/outputs float32, value_info
        cleared (shape inference recomputes it), metadata_props preserved.

    Raises:
        ImportError: onnxconverter-common is not installed (``pip install onnxconverter-common``).
    """
    try:
        from onnxconverter_common import float16
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("FP16 export needs onnxconverter-common: pip install onnxconverter-common "
                          "(or pip install 'yolo4[export]')") from e
    m = onnx.ModelProto()
    m.CopyFrom(model)
    io_names = [v.name for v in list(m.graph.input) + list(m.graph.output)
                if v.type.tensor_type.elem_type == TensorProto.FLOAT]
    block_nodes = list(decode_nodes(m)) if keep_decode_fp32 else []
    if extra_block_nodes:
        block_nodes.extend(extra_block_nodes)
    with warnings.catch_warnings():
        # "the float32 number ... will be truncated to ..." for weights beyond the clamp range
        warnings.simplefilter("ignore", UserWarning)
        out = float16.convert_float_to_float16(m, keep_io_types=True, op_block_list=float16.DEFAULT_OP_BLOCK_LIST,
                                               node_block_list=block_nodes)
    float32_outputs(out, io_names)
    del out.graph.value_info[:]
    remove_cast_round_trips(out)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return out
