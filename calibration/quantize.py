"""fp16 and int8 bundles from an fp32 bundle.

fp16: every float node runs in float16 except a keep-list (op types and node names) that stays in
float32; Cast nodes are inserted where the two meet and at the graph boundary, so every graph keeps
float32 inputs and outputs (the runtime's buffers and KV cache stay float32) and TensorRT's strongly
typed mode builds the precision that is in the ONNX. Written here (no onnxconverter-common) so the
keep-list is explicit and the casts stay within the op allowlist.

int8: onnxruntime `quantize_static` in QDQ format, int8 activations and weights, symmetric (zero
point 0, as TensorRT requires; format "s8s8", the default), or for onnxruntime's CPU provider
"u8s8": asymmetric uint8 activations with int8 weights, the form its x86 (VNNI) kernels run fast;
per-channel weights, on MatMul/Gemm/Conv only, with ranges
calibrated on the recorded feeds of every scale (`feeds.py`). Ranges are cached per graph as
onnxruntime calibration tables under a key of (fp32 graphs, image set, method), so a repeated
export does not recalibrate. What stays in higher precision is a per-graph plan, recorded in
the manifest; the defaults below were chosen by measurement (docs/precision.md).
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import shutil
import tempfile

from . import feeds as fd

PRECISIONS = ("fp16", "int8")
METHODS = ("minmax", "entropy", "percentile")
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast"})  # allowlist extension for these bundles
INT8_OP_TYPES = ("MatMul", "Gemm", "Conv")
# int8 formats: activations / weights. s8s8: symmetric int8 activations (TensorRT's rule; onnxruntime's CPU provider
# runs it too, but gains little: docs/precision.md); u8s8: asymmetric uint8 activations, onnxruntime CPU only.
INT8_FORMATS = ("s8s8", "u8s8")

# fp16: ops kept in float32 (reductions and normalisations overflow or lose precision in fp16;
# ArgMax/ArgMin choose tokens, where a tie flipped by rounding changes the whole next scale)
FP16_KEEP_OPS = frozenset({
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "Softmax", "ReduceL2", "ReduceSum",
    "ReduceMean", "ReduceMax", "Pow", "Sqrt", "ArgMax", "ArgMin", "Range",
})
_NEUTRAL_OPS = frozenset({"Cast", "Shape", "Constant", "ConstantOfShape"})  # never converted, never cast into
_FLOAT_ONLY_SLOTS = {"Resize": (1, 2)}  # roi and scales stay float32 in every precision

# Per-graph plans: graph -> precision ("fp32", "fp16", "int8"); graphs not named get the bundle's
# precision. int8 keeps the one-off graphs (image prefix with its VQ encoder, per-scale next-scale
# graphs, VQ-VAE decoder) in fp32: they run once per image, hold little compute, and the prefix's
# nearest-code search and the decoder's normalisations are where int8 costs accuracy.
DEFAULT_PLANS = {
    "int8": {"prefix": "fp32", "decoder": "fp32", "next_*": "fp32", "step": "int8"},
    # fp16 keeps the prefix too: its VQ encoder's nearest-code search flips image tokens in fp16, which flips the
    # shipped default's first depth token on ~3 % of scenes (AbsRel change 2.7 % on 64 scenes, 0.08 % with the
    # prefix in fp32: docs/precision.md)
    "fp16": {"*": "fp16", "prefix": "fp32"},
    # onnxruntime CPU (u8s8): the decoder's convolutions gain 2.3x, the step graph's 1.4x, the prefix's VQ encoder
    # ~1.9x; decoder + step cost 1.23 % AbsRel (session-8 default, expect, 128 scenes) once the decoder's output
    # stage stays fp32 (role `output_stage`; 3.1 % without it); with the prefix too, its latent stage (last conv,
    # quantiser, code searches; role `latent_stage`) fp32, 1.33 % on the session-10 default (192 scenes; the whole
    # prefix in int8 cost the session-8 default 6 %): docs/precision.md. The prefix stays fp32 since session 15:
    # once the VQ-VAE's encoder carries the depth guess (experiments.md sections 11-13) the int8 prefix missed the
    # 2 % budget on three defaults in a row (2.17, 2.33, 4.05 % on a non-VNNI CPU) where the fp32 prefix passed
    # (0.85, 1.39, 1.49 %); `--plan prefix=int8` still gives the faster plan
    "int8-u8s8": {"prefix": "fp32", "decoder": "int8", "next_*": "fp32", "step": "int8"},
}


def graph_plan(manifest: dict, precision: str, overrides: dict | None = None, int8_format: str = "s8s8") -> dict:
    """graph name -> precision for every graph of the bundle (defaults, then `overrides`)."""
    unknown = [g for g in (overrides or {}) if g not in manifest["graphs"] and g not in ("*", "next_*")]
    if unknown:
        raise ValueError(f"plan names no graph of this bundle: {', '.join(unknown)} (its graphs: "
                         f"{', '.join(manifest['graphs'])}, or next_* / *)")
    default = DEFAULT_PLANS["int8-u8s8" if precision == "int8" and int8_format == "u8s8" else precision]
    rules = {**default, **(overrides or {})}
    plan = {}
    for name in manifest["graphs"]:
        p = rules.get(name)
        if p is None and name.startswith("next_"):
            p = rules.get("next_*")
        plan[name] = p or rules.get("*", precision)
        if plan[name] not in ("fp32", "fp16", "int8"):
            raise ValueError(f"graph {name}: unknown precision {plan[name]!r}")
    return plan


# ------------------------------------------------------------------ fp16


def convert_fp16(model, keep_ops=FP16_KEEP_OPS, keep_nodes=()):
    """A float16 copy of an onnx ModelProto with fp32 kept at the keep-list and at the graph boundary.

    Args:
        model: onnx.ModelProto (not modified).
        keep_ops: op types that stay float32.
        keep_nodes: node names that stay float32.

    Returns:
        (new ModelProto, list of the node names kept in float32 that had float inputs).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(copy.deepcopy(model))
    g = model.graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    inits = {i.name: i for i in g.initializer}
    dtype.update({n: i.data_type for n, i in inits.items()})
    keep_nodes = set(keep_nodes)

    def is_fp16(node):
        return node.op_type not in _NEUTRAL_OPS and node.op_type not in keep_ops and node.name not in keep_nodes

    def float_slots(node):
        skip = _FLOAT_ONLY_SLOTS.get(node.op_type, ())
        return [i for i, n in enumerate(node.input) if n and i not in skip and dtype.get(n) in (F32, F16)]

    # initializers used only by fp16 nodes (in convertible slots) are stored as float16
    uses: dict[str, list[bool]] = {}
    for node in g.node:
        convertible = set(float_slots(node)) if is_fp16(node) else set()
        for i, n in enumerate(node.input):
            if n in inits:
                uses.setdefault(n, []).append(i in convertible)
    cur = dict(dtype)
    for name, init in inits.items():
        if init.data_type == F32 and uses.get(name) and all(uses[name]):
            a = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.clip(a, -65504, 65504).astype(np.float16), name))
            cur[name] = F16

    nodes, casts, kept = [], {}, []

    def cast(name, to):
        if (name, to) not in casts:
            out = f"{name}__{'fp16' if to == F16 else 'fp32'}"
            nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"cast_{out}"))
            casts[(name, to)] = out
        return casts[(name, to)]

    for node in g.node:
        if node.op_type not in _NEUTRAL_OPS:
            want = F16 if is_fp16(node) else F32
            slots = float_slots(node)
            if want == F32 and slots:
                kept.append(node.name)
            for i in slots:
                if cur[node.input[i]] != want:
                    node.input[i] = cast(node.input[i], want)
        nodes.append(node)
        for o in node.output:
            cur[o] = F16 if (dtype.get(o) == F32 and is_fp16(node)) else dtype.get(o)

    # fp32 outputs at the boundary: the fp16 producer writes `<name>__fp16`, a Cast writes `<name>`
    for out in g.output:
        if dtype.get(out.name) == F32 and cur.get(out.name) == F16:
            inner = f"{out.name}__fp16"
            for node in nodes:
                for seq in (node.input, node.output):
                    for i, n in enumerate(seq):
                        if n == out.name:
                            seq[i] = inner
            nodes.append(helper.make_node("Cast", [inner], [out.name], to=F32, name=f"cast_{out.name}"))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model, kept


# ------------------------------------------------------------------ int8


# int8 roles kept in fp32 by default (`int8_exclusions`); "output_stage" joined on 2026-12-01 (docs/precision.md)
INT8_ROLES = ("attention", "head", "output_stage", "latent_stage")
DEFAULT_INT8_EXCLUDE = INT8_ROLES
_CACHE_KEY_EXCLUDE = ("attention", "head")  # the exclusions that calibration keys made before 2026-12-01 leave unnamed


def _output_stage(model, producer: dict) -> list[str]:
    """Conv nodes that run at the spatial size of the graph's 4-D output (the VQ-VAE decoder's last stage),
    but for the upsampling conv that enters it (a Resize feeds it: the largest of them, and int8 there cost the
    shipped default little, docs/precision.md). `producer`: output name -> node of `model`."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)

    def hw(vi):
        d = vi.type.tensor_type.shape.dim
        return tuple(x.dim_value for x in d[2:]) if len(d) == 4 and all(x.dim_value for x in d[2:]) else None

    shapes = {vi.name: hw(vi) for vi in list(model.graph.value_info) + list(model.graph.output)}
    outs = {shapes.get(o.name) for o in model.graph.output} - {None}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and shapes.get(n.output[0]) in outs
            and getattr(producer.get(n.input[0]), "op_type", None) != "Resize"]


def _constant_nodes(model, inits: set) -> list[str]:
    """Names of the MatMul/Gemm/Conv nodes whose inputs derive from initializers and Constant nodes alone."""
    const = set(inits)
    names = []
    for n in model.graph.node:  # ONNX graphs are topologically sorted
        if all(i == "" or i in const for i in n.input):
            const.update(n.output)
            if n.op_type in INT8_OP_TYPES:
                names.append(n.name)
    return names


def _latent_stage(model, channels: int) -> list[str]:
    """MatMul/Gemm/Conv nodes from the conv that narrows wider features to the VQ-VAE latent's `channels` (the
    encoder's last conv) onward: the quant conv, the residual quantiser's convs, the scale interpolations and the
    nearest-code searches. The decoder's first conv reads the latent (no wider input): it starts no stage."""
    inits = {i.name: i for i in model.graph.initializer}
    reached, names = set(), []
    for n in model.graph.node:  # topological order
        w = inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        start = w is not None and len(w.dims) == 4 and w.dims[0] == channels and w.dims[1] > channels
        if start or any(i in reached for i in n.input):
            reached.update(n.output)
            if n.op_type in INT8_OP_TYPES:
                names.append(n.name)
    return names


def int8_exclusions(model, exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE,
                    latent_channels: int | None = None) -> list[str]:
    """Node names of an fp32 graph to keep out of int8, by role.

    Roles: "attention" = MatMuls whose inputs are both activations (q @ k^T and attn @ v: their
    inputs are the KV cache and the softmax, which per-tensor int8 ranges fit badly), "head" = the
    MatMul/Gemm that produces the logits (tokens are its argmax) and the one that turns their softmax into the
    expected code vectors (`h_expect`), "output_stage" = the convolutions at
    the spatial size of a 4-D output (the decoder's last, full-resolution stage, whose error is the depth
    map's: in int8 it cost the shipped default 2.3 % AbsRel, kept in fp32 0.8 %; graphs without a 4-D
    output have none), "latent_stage" = the image prefix's VQ encoder from its last conv (features -> the
    `latent_channels`-channel latent) onward, with the residual quantiser and its nearest-code searches (int8
    noise there picks other image tokens; needs `latent_channels`; the other graphs have none). Node names pass
    through unchanged.

    Whatever the roles, MatMul/Gemm/Conv nodes that depend on no graph input (e.g. the step graph's AdaLN
    modulation of the constant condition) are never quantised: in fp32 onnxruntime folds them into constants at
    load, in Q/DQ form they would run at every call (and in int8).
    """
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    names = _constant_nodes(model, inits)
    if "output_stage" in exclude:
        names += _output_stage(model, producer)
    if "latent_stage" in exclude and latent_channels:
        names += [n for n in _latent_stage(model, latent_channels) if n not in names]
    if "attention" in exclude:
        names += [n.name for n in model.graph.node
                  if n.op_type == "MatMul" and not any(i in inits for i in n.input)]
    for output in ("logits", "h_expect") if "head" in exclude else ():
        node = producer.get(output)
        while node is not None and node.op_type not in ("MatMul", "Gemm"):
            data = [i for i in node.input if i not in inits and i in producer]
            node = producer[data[0]] if data else None
        if node is not None:
            names.append(node.name)
    names += [e for e in exclude if e not in INT8_ROLES]
    return names


def _scope(exclusion: str) -> tuple[str | None, str]:
    """An int8 exclusion -> (graph, role or node name); graph None unless it is written "GRAPH:NODE"."""
    graph, sep, name = exclusion.partition(":")
    return (graph, name) if sep else (None, exclusion)


def quantize_int8(src_path, dst_path, feeds: list[dict] | None, *, method: str = "minmax", cache_path=None,
                  exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE, percentile: float = 99.999,
                  int8_format: str = "s8s8", graph: str | None = None, latent_channels: int | None = None) -> dict:
    """onnxruntime static QDQ quantisation of one graph (int8 per-channel weights; activations per `int8_format`).

    Args:
        src_path: the fp32 ONNX file.
        dst_path: where to write the int8 ONNX file.
        feeds: the graph's recorded feed dicts; may be None when `cache_path` holds the ranges.
        method: "minmax", "entropy" or "percentile".
        cache_path: an onnxruntime calibration table (JSON); read if it exists, else written.
        exclude: roles or node names kept in fp32 (`int8_exclusions`); a name written "GRAPH:NODE" applies only
            to the graph called GRAPH (node names repeat across graphs: both VQ-VAE graphs have `node_conv2d_3`).
        percentile: for method "percentile".
        graph: the graph's name in its bundle (for "GRAPH:NODE" exclusions).
        latent_channels: the VQ-VAE latent's channels (role "latent_stage").
        int8_format: "s8s8" (symmetric int8 activations: TensorRT) or "u8s8" (asymmetric uint8: onnxruntime CPU).

    Returns:
        {"excluded_nodes": [...], "calibrated": bool (False when the ranges came from the cache)}.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {METHODS}")
    if int8_format not in INT8_FORMATS:
        raise ValueError(f"unknown int8 format {int8_format!r}; use one of {INT8_FORMATS}")
    u8 = int8_format == "u8s8"
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    exclude = tuple(name for g, name in map(_scope, exclude) if g is None or g == graph)
    src_model = onnx.load(os.fspath(src_path), load_external_data=False)
    excluded = int8_exclusions(src_model, exclude, latent_channels)
    if graph == "prefix" and "latent_stage" in exclude and latent_channels and \
            not _latent_stage(src_model, latent_channels):
        raise ValueError(f"{src_path}: no conv narrows to the {latent_channels}-channel latent, so the prefix's code "
                         "searches would be quantised; keep the prefix fp32 (--plan prefix=fp32)")
    hit = cache_path is not None and os.path.isfile(cache_path)
    if not hit and not feeds:
        raise ValueError(f"{src_path}: no calibration feeds and no cached ranges")
    reader, extra = None, {}
    if not hit:
        # onnxruntime's histogram calibrators stack each tensor's values over a batch of calls, so
        # a batch must hold one shape: calibrate in strides of one scale (N images each)
        ordered, group = fd.group_by_shape(feeds)
        reader = fd.feed_reader(ordered)
        if group and group < len(ordered):
            extra["CalibStridedMinMax"] = group
        elif group is None and method != "minmax":
            raise ValueError(f"{src_path}: {method} calibration needs equally many calls per input shape")
    root = logging.getLogger()  # quantize_static logs a pre-processing hint on the root logger
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(os.fspath(src_path), os.fspath(dst_path), reader,
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OP_TYPES), per_channel=True,
                        activation_type=QuantType.QUInt8 if u8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=cm,
                        calibration_cache_path=None if cache_path is None else os.fspath(cache_path),
                        extra_options={"ActivationSymmetric": not u8, "WeightSymmetric": True,
                                       "CalibPercentile": percentile, **extra})
    finally:
        root.setLevel(level)
    return {"excluded_nodes": excluded, "calibrated": not hit}


# ------------------------------------------------------------------ bundle


def check_precision_graph(path) -> set[str]:
    """`export.onnx.check_graph`'s rules with the allowlist extended by Q/DQ and Cast."""
    from depthart.export.onnx import PRECISION_OPS, check_graph

    return check_graph(path, PRECISION_OPS)


def make_precision_bundle(fp32_bundle_dir, out_dir, precision: str, calib_images=None, num_calib: int = 16,
                          method: str = "minmax", force: bool = False, plan: dict | None = None,
                          int8_exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE,
                          fp16_keep_ops=FP16_KEEP_OPS, cache_dir=None, progress=None, int8_format: str = "s8s8") -> dict:
    """An fp16 or int8 bundle from an fp32 bundle. Returns the new manifest.

    Args:
        fp32_bundle_dir: a bundle written by `depthart export` (precision fp32).
        out_dir: the bundle folder to create (atomically; replaced only with `force`).
        precision: "fp16" or "int8".
        calib_images: int8 only: a folder of calibration images, or None for procedural scenes.
        num_calib: int8 only: number of calibration images. Defaults to 16.
        method: int8 only: "minmax" (default), "entropy" or "percentile".
        force: replace an existing `out_dir`.
        plan: per-graph precision overrides, e.g. {"decoder": "fp16", "next_*": "int8"}.
        int8_exclude: roles/nodes of int8 graphs kept in fp32 (`int8_exclusions`).
        fp16_keep_ops: op types kept in fp32 in fp16 graphs.
        cache_dir: where calibration tables are cached; defaults to `feeds.default_cache_dir()`.
        progress: optional callable(message).
        int8_format: "s8s8" (default: symmetric int8 activations, for TensorRT and any provider) or "u8s8"
            (asymmetric uint8 activations: onnxruntime's CPU provider only, where it is the fast form;
            TensorRT refuses such a bundle).
    """
    import onnx

    from depthart.errors import DepthartError
    from depthart.export.bundle import _replace_dir
    from depthart.export.manifest import write_manifest
    from depthart.export.onnx import graph_io
    from depthart.runtime.integrity import verify_bundle
    from depthart.runtime.manifest import load_manifest, manifest_sampler

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if int8_format not in INT8_FORMATS:
        raise ValueError(f"int8 format must be one of {INT8_FORMATS}, got {int8_format!r}")
    say = progress or (lambda msg: None)
    src = os.path.abspath(os.fspath(fp32_bundle_dir))
    out_dir = os.path.abspath(os.fspath(out_dir))
    if out_dir == src:
        raise DepthartError("the precision bundle must go to a new folder, not over its fp32 source")
    if os.path.exists(out_dir) and not force:
        raise DepthartError(f"{out_dir} exists; pass --force to replace it")
    m = load_manifest(src)
    verify_bundle(src, m, engines=False)  # a damaged source is refused by name, not as a protobuf error
    if m["precision"] != "fp32":
        raise DepthartError(f"{src} is a {m['precision']} bundle; make precision bundles from an fp32 bundle")
    graphs = graph_plan(m, precision, plan, int8_format)
    scoped = sorted({g for g, _ in map(_scope, int8_exclude) if g is not None} - set(m["graphs"]))
    if scoped:
        raise ValueError(f"int8 exclusions name no graph of this bundle: {', '.join(scoped)} (GRAPH:NODE; its graphs: "
                         f"{', '.join(m['graphs'])})")
    calib = None
    int8_graphs = [g for g, p in graphs.items() if p == "int8"]
    if int8_graphs:
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; use one of {METHODS}")
        size = m["image_size"]
        say(f"calibration images: {calib_images or 'procedural scenes'} ({num_calib})")
        images, image_set = fd.calibration_images(calib_images, num_calib, size)
        settings = {"method": method, "op_types": list(INT8_OP_TYPES)}
        if int8_format != "s8s8":  # s8s8 keys stay those of earlier caches
            settings["int8_format"] = int8_format
        if tuple(int8_exclude) != _CACHE_KEY_EXCLUDE:  # the ranges cover what is quantised (earlier keys kept)
            settings["exclude"] = list(int8_exclude)
        sampler_name = manifest_sampler(m)
        if sampler_name != "greedy":  # feeds follow the bundle's sampler (greedy keys stay those of earlier caches)
            settings["sampler"] = sampler_name
        key = fd.calibration_key(fd.bundle_hash(src), image_set, **settings)
        cache = os.path.join(os.fspath(cache_dir or fd.default_cache_dir()), key)
        os.makedirs(cache, exist_ok=True)
        tables = {g: os.path.join(cache, f"{g}.json") for g in int8_graphs}
        feeds = None
        if not all(os.path.isfile(t) for t in tables.values()):
            say(f"recording feeds of every graph at every scale ({len(images)} images)")
            feeds = fd.feeds_from_bundle(src, images)
        else:
            say(f"calibration ranges from the cache {cache}")
        calib = {"method": method, "images": image_set, "key": key, "cache": cache, "format": "QDQ",
                 "int8_format": int8_format, "sampler": sampler_name,
                 "activations": "uint8 asymmetric per-tensor" if int8_format == "u8s8" else "int8 symmetric per-tensor",
                 "weights": "int8 symmetric per-channel",
                 "op_types": list(INT8_OP_TYPES), "tool": "onnxruntime.quantization.quantize_static",
                 "calibrated": feeds is not None}

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.partial-")
    try:
        for f in os.listdir(src):  # codebook and anything else the bundle carries
            if f != "manifest.json" and not f.endswith((".engine", ".engine.json")):
                shutil.copy2(os.path.join(src, f), os.path.join(tmp, f))
        new_graphs, choices = {}, {}
        for name, g in m["graphs"].items():
            p = graphs[name]
            path = os.path.join(tmp, g["file"])
            choice = {"precision": p}
            if p == "fp16":
                model, kept = convert_fp16(onnx.load(os.path.join(src, g["file"])), fp16_keep_ops)
                onnx.save(model, path)
                choice["fp32_ops"] = sorted(fp16_keep_ops)
                choice["fp32_nodes"] = len(kept)
            elif p == "int8":
                r = quantize_int8(os.path.join(src, g["file"]), path, feeds.get(name) if feeds else None,
                                  method=method, cache_path=tables[name], exclude=int8_exclude,
                                  int8_format=int8_format, graph=name, latent_channels=m["model"].get("cvae"))
                choice["fp32_nodes"] = r["excluded_nodes"]
                choice["fp32_roles"] = [e for e in int8_exclude if e in INT8_ROLES]
            ops = check_precision_graph(path)
            files = [g["file"]]  # fp16/int8 rewrites store weights inline (all presets but d30 fit)
            new_graphs[name] = {**g, "data_files": [] if p != "fp32" else g.get("data_files", []),
                                "bytes": sum(os.path.getsize(os.path.join(tmp, f)) for f in files),
                                "ops": sorted(ops), "precision": p, **graph_io(path)}
            if p != "fp32":
                for f in g.get("data_files", []):
                    os.remove(os.path.join(tmp, f))
            choices[name] = choice
            say(f"{name}: {p}, {new_graphs[name]['bytes'] / 1e6:.2f} MB")
        manifest = {**m, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "precision": precision, "graphs": new_graphs, "precision_plan": choices,
                    "calibration": calib, "source_bundle": {"path": src, "precision": "fp32"},
                    "parity": None, "accuracy": None}
        manifest.pop("engines", None)
        write_manifest(tmp, manifest)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
