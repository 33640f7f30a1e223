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
    "Add", "ArgMax", "ArgMin", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "Div",
    "Equal", "Erf", "Expand", "Gather", "Gemm", "GroupNormalization", "Identity", "InstanceNormalization",
    "LayerNormalization", "MatMul", "Max", "Min", "Mul", "Neg", "Pad", "Pow", "Range", "ReduceL2", "ReduceMax",
    "ReduceMean", "ReduceSum", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt",
    "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})


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
                     ["logits", "tokens", "h", "new_k", "new_v"],
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
