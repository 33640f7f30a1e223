"""The scale loop over the exported graphs, written once against a `run(graph, feeds) -> outputs` callable.

Export uses it twice: with the torch wrapper modules (the reference) and with onnxruntime sessions
(the exported graphs), recording every graph call so the two can be compared call by call.
numpy only; the KV cache is one preallocated buffer per K and V (layout in `graphs.py`), each
step reads a prefix view and its new keys/values are copied into their slots.
"""

from __future__ import annotations

import numpy as np

from ..runtime.sampling import in_step_graph


def steps(cfg) -> list[dict]:
    """Per-scale static shapes of the step graph: tokens, past length (incl. the null slot), cache slots."""
    out = []
    for k, (begin, end) in enumerate(cfg.step_ranges()):
        out.append({"scale": k, "patch": cfg.patch_nums[k], "tokens": end - begin, "past": 1 + begin,
                    "slots": [1 + begin, 1 + end], "logits_tail": cfg.patch_nums[k] ** 2})
    return out


def run_loop(run, cfg, image_B3HW: np.ndarray, record: list | None = None, feeds_from: list | None = None,
             sampler=None, codebook: np.ndarray | None = None) -> dict:
    """Depth for a batch of preprocessed images through the graphs (greedy unless `sampler` is given).

    Args:
        run: callable(graph_name, feeds: dict[str, ndarray]) -> dict[str, ndarray].
        cfg: the ModelConfig (shapes only).
        image_B3HW: float32 images in [-1, 1] at cfg.image_size.
        record: if a list, every call is appended as (graph_name, feeds, outputs).
        feeds_from: a `record` of another run; each call then gets that run's feeds instead of this
            loop's own (teacher-forced comparison: per-graph errors do not compound).
        sampler: a runtime sampler (`depthart.runtime.sampling.make_sampler`; None = the step graph's argmax)
            that replaces the step graph's tokens and code vectors from its logits, as `DepthRuntime` does (the
            `expect` sampler takes the step graph's own `h_expect` where the graph has it, as the runtime does).
        codebook: (V, C) float32, the bundle's codebook; needed with a sampler.

    Returns:
        {"depth": (B, 1, S, S) float32 in [0, 1], "tokens": per-scale (B, pn^2) int64}
    """
    B = image_B3HW.shape[0]
    P = cfg.patch_nums[-1]
    calls = iter(feeds_from) if feeds_from is not None else None

    def call(name, feeds):
        if calls is not None:
            ref_name, feeds, _ = next(calls)
            assert ref_name == name, (ref_name, name)
        out = run(name, feeds)
        if record is not None:
            record.append((name, feeds, out))
        return out

    shape = (1 + cfg.seq_len, cfg.depth, B, cfg.heads, cfg.head_dim)
    cache_k = np.zeros(shape, np.float32)
    cache_v = np.zeros(shape, np.float32)
    x = call("prefix", {"image": image_B3HW.astype(np.float32)})["x"]
    f_hat = np.zeros((B, cfg.cvae, P, P), np.float32)
    tokens = []
    for s in steps(cfg):
        a, b = s["slots"]
        out = call("step", {"x": x, "past_k": cache_k[:a], "past_v": cache_v[:a]})
        cache_k[a:b] = out["new_k"]
        cache_v[a:b] = out["new_v"]
        n = s["logits_tail"]
        if sampler is None:
            idx, h = out["tokens"][:, -n:], out["h"][:, -n:]
        elif in_step_graph(sampler) and "h_expect" in out:  # in the graph, as DepthRuntime runs it
            idx, h = out["tokens"][:, -n:], out["h_expect"][:, -n:]
        else:
            idx, h = sampler(s["scale"], out["logits"][:, -n:], codebook)
        tokens.append(idx)
        nxt = call(f"next_{s['scale']}", {"f_hat": f_hat, "h": np.ascontiguousarray(h, dtype=np.float32)})
        f_hat = nxt["f_hat_out"]
        x = nxt.get("x_next")
    depth = call("decoder", {"f_hat": f_hat})["depth"]
    return {"depth": depth, "tokens": tokens}


def torch_runner(graphs: dict):
    """run() over the torch wrapper modules of `graphs.graph_specs` (name -> (module, ..., output names))."""
    import torch

    def run(name, feeds):
        module, _, in_names, out_names, _ = graphs[name]
        with torch.no_grad():
            outs = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in in_names])
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {n: np.ascontiguousarray(o.numpy()) for n, o in zip(out_names, outs)}

    return run


def ort_runner(bundle_dir, manifest: dict, providers=("CPUExecutionProvider",)):
    """run() over onnxruntime sessions of a bundle's graphs (created once, lazily)."""
    import os

    import onnxruntime as ort

    sessions = {}

    def run(name, feeds):
        if name not in sessions:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            path = os.path.join(bundle_dir, manifest["graphs"][name]["file"])
            sessions[name] = ort.InferenceSession(path, opts, providers=list(providers))
        sess = sessions[name]
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    return run
