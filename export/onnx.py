"""ONNX export of the pieces in `graphs.py`, with the edge constraints checked.

One dynamic-shape step graph serves every scale (dynamic token count `tokens`, past length `past`
and `batch`); at run time each scale uses one static shape (one TensorRT optimisation profile per
scale), so the transformer's weights exist once on disk and once in memory. The small per-scale
graphs (`next_<k>`) duplicate only embeddings and a 3x3 conv.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from .graphs import DecoderGraph, NextGraph, PrefixGraph, StepGraph

OPSET = 18  # TensorRT 10.3 (JetPack 6) parses opsets <= 20; 18 has LayerNormalization, no Attention op
MAX_BATCH = 64
INLINE_LIMIT = 1_800_000_000  # bytes of weights above which a graph stores them as external data

# Every op an exported graph may contain. No control flow (If/Loop/Scan), no scatter, no ONNX
# Attention, no contrib ops: they break the TensorRT 10.3 .. 11.x window (see docs/export.md).
ALLOWED_OPS = frozenset({
    "Add", "ArgMax", "ArgMin", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
    "Div", "Equal", "Erf", "Expand", "Gather", "Gemm", "GroupNormalization", "Identity", "InstanceNormalization",
    "LayerNormalization", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad", "Pow", "Range", "ReduceL2",
    "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax",
    "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})  # ConvTranspose, MaxPool, Relu: a U-Net image side (ModelConfig.image_unet); TensorRT's deconvolution,
#     pooling and activation layers, native in every version of the window


def graph_specs(model, batch: int = 1) -> dict:
    """name -> (module, example inputs, input names, output names, dynamic shapes) for every graph.

    Example inputs use batch 2 and non-trivial lengths so that no dynamic dimension is specialised.
    """
    cfg = model.cfg
    Dim = torch.export.Dim
    B = Dim("batch", min=1, max=MAX_BATCH)
    S, P, C, cv = cfg.image_size, cfg.patch_nums[-1], cfg.width, cfg.cvae
    kv = (cfg.depth, 2, cfg.heads, cfg.head_dim)  # (depth, B, H, D) after the sequence axis
    ex = 2
    specs = {
        "prefix": (PrefixGraph(model), (torch.zeros(ex, 3, S, S),), ["image"], ["x"],
                   {"image": {0: B}}),
    }
    T = Dim("past", min=1, max=cfg.seq_len)
    tok = Dim("tokens", min=1, max=cfg.tokens_per_map + cfg.first_l)
    past = torch.zeros(3, *kv)
    specs["step"] = (StepGraph(model), (torch.zeros(ex, 2, C), past, past.clone()), ["x", "past_k", "past_v"],
                     ["logits", "tokens", "h", "h_expect", "new_k", "new_v"],
                     {"x": {0: B, 1: tok}, "past_k": {0: T, 2: B}, "past_v": {0: T, 2: B}})
    for k, pn in enumerate(cfg.patch_nums):
        outs = ["f_hat_out"] if k + 1 == cfg.num_scales else ["f_hat_out", "x_next"]
        specs[f"next_{k}"] = (NextGraph(model, k), (torch.zeros(ex, cv, P, P), torch.zeros(ex, pn * pn, cv)),
                              ["f_hat", "h"], outs, {"f_hat": {0: B}, "h": {0: B}})
    specs["decoder"] = (DecoderGraph(model), (torch.zeros(ex, cv, P, P),), ["f_hat"], ["depth"], {"f_hat": {0: B}})
    return specs


class _SkipTorchvisionNotes(logging.Filter):
    """torch's ONNX exporter logs "torchvision is not installed. Skipping torchvision::nms" (and roi_align, roi_pool,
    deform_conv2d) each time it builds its op registry, i.e. per graph: depthart uses no torchvision op, so these
    are not the user's business. Every other record of that logger passes."""

    def filter(self, record):
        return not str(record.msg).startswith("torchvision is not installed")


_REGISTRY_LOG = logging.getLogger("torch.onnx._internal.exporter._registration")
if not any(isinstance(f, _SkipTorchvisionNotes) for f in _REGISTRY_LOG.filters):
    _REGISTRY_LOG.addFilter(_SkipTorchvisionNotes())


def _param_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def onnx_from_module(module, args, path, input_names, output_names, dynamic_shapes, opset: int = OPSET) -> None:
    """Export one graph with torch's exporter (torch.export based); weights inline below 1.8 GB."""
    external = _param_bytes(module) > INLINE_LIMIT
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, os.fspath(path), dynamo=True, opset_version=opset,
                          input_names=input_names, output_names=output_names,
                          dynamic_shapes=dynamic_shapes, external_data=external, verbose=False,
                          optimize=True)
    _rewrite_for_onnxruntime(path)


def _rewrite_for_onnxruntime(path) -> None:
    """Apply `fusable_gelu` to an exported file in place (atomically; external weight files untouched)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    if fusable_gelu(model):
        tmp = f"{os.fspath(path)}.tmp"
        onnx.save(model, tmp)
        os.replace(tmp, os.fspath(path))


def fusable_gelu(model) -> int:
    """Reorder each tanh GELU that torch's exporter writes, `x * (0.5 * (1 + tanh(c * (x + k * x^3))))`, into
    `(0.5 * x) * (1 + tanh(...))`: the same math (one rounding moves), in the order onnxruntime's FastGelu fusion
    recognises. Fused, the FFN's GELU and the bias add before it run as one kernel (the step graph ~10 % faster on
    CPU, docs/benchmarks.md); TensorRT fuses either order. Edits `model` (an onnx.ModelProto) in place; returns the
    number of GELUs reordered."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1

    def scalar(name, value):
        t = consts.get(name)
        if t is None:
            return False
        a = numpy_helper.to_array(t)
        return a.size == 1 and abs(float(a.reshape(-1)[0]) - value) <= 1e-6 * max(1.0, abs(value))

    def made_by(name, op):
        n = producer.get(name)
        return n if n is not None and n.op_type == op else None

    def tanh_gelu_of(add_one, x) -> bool:  # add_one = 1 + tanh(c * (x + k * pow(x, 3)))?
        others = [i for i in add_one.input if not scalar(i, 1.0)]
        tanh = made_by(others[0], "Tanh") if len(others) == 1 and len(add_one.input) == 2 else None
        scaled = made_by(tanh.input[0], "Mul") if tanh is not None else None
        inner = next((made_by(i, "Add") for i in scaled.input if made_by(i, "Add")), None) if scaled else None
        if inner is None or x not in inner.input:
            return False
        cubic = next((made_by(i, "Mul") for i in inner.input if made_by(i, "Mul")), None)
        pow3 = next((made_by(i, "Pow") for i in cubic.input if made_by(i, "Pow")), None) if cubic else None
        return pow3 is not None and pow3.input[0] == x and scalar(pow3.input[1], 3.0)

    rewrites = 0
    for node in list(g.node):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for xi in (0, 1):
            x, h = node.input[xi], node.input[1 - xi]
            half = made_by(h, "Mul")
            if half is None or uses.get(h) != 1:
                continue
            c = [i for i in half.input if scalar(i, 0.5)]
            rest = [i for i in half.input if not scalar(i, 0.5)]
            add_one = made_by(rest[0], "Add") if len(c) == 1 and len(rest) == 1 else None
            if add_one is None or not tanh_gelu_of(add_one, x):
                continue
            half_x = f"{node.output[0]}_half_x"
            g.node.insert(list(g.node).index(node),
                          helper.make_node("Mul", [x, c[0]], [half_x], name=f"{node.name}_half_x"))
            node.input[0], node.input[1] = half_x, rest[0]
            g.node.remove(half)
            rewrites += 1
            break
    return rewrites


def graph_ops(path) -> set[str]:
    """Op types used in an ONNX file (nested graphs included)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    ops = set()
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}")
            stack.extend(a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
    return ops


def graph_io(path) -> dict:
    """{"inputs": [...], "outputs": [...]} with name, shape (ints or symbolic names) and dtype."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)

    def desc(v):
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    return {"inputs": [desc(v) for v in model.graph.input], "outputs": [desc(v) for v in model.graph.output]}


# What fp16 / int8 bundles add: explicit quantisation (Q/DQ, zero point 0) and casts at fp32 islands.
PRECISION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast"})


def check_graph(path, extra_ops=frozenset()) -> set[str]:
    """onnx.checker plus the edge constraints (op allowlist + `extra_ops`, opset). Returns the ops.

    Raises ValueError."""
    import onnx

    onnx.checker.check_model(os.fspath(path), full_check=False)
    model = onnx.load(os.fspath(path), load_external_data=False)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx") != OPSET:
        raise ValueError(f"{path}: opset {opsets.get('ai.onnx')}, expected {OPSET}")
    ops = graph_ops(path)
    bad = sorted(ops - ALLOWED_OPS - frozenset(extra_ops))
    if bad:
        raise ValueError(f"{path}: ops outside the edge allowlist: {bad}")
    return ops
