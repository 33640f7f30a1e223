"""DepthRuntime: the scale loop over a bundle's graphs. numpy + a backend, never torch.

Per batch size, every buffer is allocated once (the KV cache for the whole sequence, each step's
logits/tokens/code vectors, the next-scale inputs, two f_hat buffers used in turn, the depth map)
and every graph call is bound to its buffers once; a prediction then only preprocesses, runs the
bound calls in order and resizes the depth maps back. Steps write their new keys/values straight
into the cache (slots [1 + begin_k, 1 + end_k), layout in the manifest's `kv_cache`).

The same plan drives both backends. On onnxruntime the graphs use the host buffers themselves; on
TensorRT every buffer has a device twin (views stay views), and the plan says when the host side
changes or is needed: `upload` what the host writes (image, zeroed f_hat, a sampler's choices),
`download` what it reads (depth and tokens at the end, logits for a host-side sampler; the `expect`
sampler runs inside the step graph of bundles that have its output) and `bind_copy` for
the one buffer-to-buffer copy (step 0's code-vector tail). These are no-ops / np.copyto on onnxruntime.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np

from ..errors import DepthartError
from ..preprocess import MAX_PIXELS, load_image, resize_depth, to_model_input
from .integrity import verify_bundle
from .manifest import SAMPLERS, load_codebook, load_manifest, manifest_sampler
from .sampling import in_step_graph, make_sampler


@dataclasses.dataclass
class DepthResult:
    """One image's prediction.

    depth: float32 (H, W) relative depth in [0, 1] at the input's size, 0 = near.
    timings: seconds per stage of the batch it ran in ("preprocess", "prefix", "step_k", "next_k",
        "decoder", "postprocess", "total"); shared by all images of a batch. On TensorRT the graph
        stages are launch times (the GPU runs asynchronously) and "download" holds the wait for
        the GPU plus the copy of the results back.
    tokens: per scale run, the chosen token indices (pn*pn,) int64.
    scales: how many scales (coarse to fine) the depth was decoded from: all of them unless `max_scale` or
        `budget_ms` stopped earlier (see DepthRuntime.predict_batch).
    """

    depth: np.ndarray
    timings: dict
    tokens: list
    scales: int | None = None


class _Plan:
    """Buffers and bound calls for one batch size."""

    def __init__(self, backend, m: dict, batch: int):
        self.backend = backend
        cfg = m["model"]
        B, S = batch, m["image_size"]
        P = cfg["patch_nums"][-1]
        kv = m["kv_cache"]
        f32 = np.float32
        self.image = np.zeros((B, 3, S, S), f32)
        shape = (kv["slots"], kv["depth"], B, kv["heads"], kv["head_dim"])
        self.cache_k, self.cache_v = np.zeros(shape, f32), np.zeros(shape, f32)
        self.f_hat = [np.zeros((B, cfg["cvae"], P, P), f32) for _ in range(2)]
        self.depth = np.zeros((B, 1, S, S), f32)
        steps = m["steps"]
        x = np.zeros((B, steps[0]["tokens"], cfg["width"]), f32)  # step 0's input, from the prefix graph
        self.prefix = ("prefix", backend.bind("prefix", {"image": self.image}, {"x": x}))
        # per scale k, its calls: step_k [, tail_k], next_k (f_hat[k % 2] -> f_hat[(k + 1) % 2]), in two versions
        # that share the step call: "argmax" feeds next_k the step's greedy code vectors `h` (which a host-side
        # sampler overwrites after the step), "expect" its in-graph expected ones `h_expect` (bundles exported
        # since 2026-12-01: the `expect` sampler then runs with no logits download and no host softmax)
        self.in_graph_expect = "h_expect" in {o["name"] for o in m["graphs"]["step"]["outputs"]}
        self.scales = {"argmax": [], "expect": []} if self.in_graph_expect else {"argmax": []}
        self.logits, self.tokens, self.h_tail = [], [], []
        self.sample_after = {}
        tail_only = m.get("step_logits") == "tail"  # else (older bundles) the step's outputs cover all its tokens
        for s in steps:
            k, (a, b), n = s["scale"], s["slots"], s["logits_tail"]
            l = n if tail_only else s["tokens"]  # tokens the step graph gives logits (and tokens, h, h_expect) for
            logits = np.zeros((B, l, cfg["vocab_size"]), f32)
            tokens = np.zeros((B, l), np.int64)
            vectors = {mode: np.zeros((B, l, cfg["cvae"]), f32) for mode in self.scales}
            outs = {"logits": logits, "tokens": tokens, "h": vectors["argmax"], "new_k": self.cache_k[a:b],
                    "new_v": self.cache_v[a:b]}
            if self.in_graph_expect:
                outs["h_expect"] = vectors["expect"]
            step = (f"step_{k}", backend.bind(
                "step", {"x": x, "past_k": self.cache_k[:a], "past_v": self.cache_v[:a]}, outs))
            f_in, f_out = self.f_hat[k % 2], self.f_hat[(k + 1) % 2]
            next_outs = {"f_hat_out": f_out}
            if k + 1 < len(steps):
                x = np.zeros((B, steps[k + 1]["tokens"], cfg["width"]), f32)
                next_outs["x_next"] = x
            for mode, h in vectors.items():
                calls = [step]
                # the next-scale graph takes the last n code vectors (an older bundle's step 0 gives more: a copy)
                h_tail = h if n == l else np.zeros((B, n, cfg["cvae"]), f32)
                last = f"step_{k}"
                if h_tail is not h:
                    last = f"tail_{k}"
                    calls.append((last, backend.bind_copy(h_tail, h[:, -n:])))
                calls.append((f"next_{k}", backend.bind(f"next_{k}", {"f_hat": f_in, "h": h_tail}, next_outs)))
                self.scales[mode].append(calls)
                if mode == "argmax":
                    self.sample_after[last] = k  # a host-side sampler replaces the greedy code vectors here
                    self.h_tail.append(h_tail)
            self.logits.append(logits)
            self.tokens.append(tokens)
        # after K scales the latent is in f_hat[K % 2]: a decoder call bound to each buffer decodes any prefix
        self.decoders = [backend.bind("decoder", {"f_hat": f}, {"depth": self.depth}) for f in self.f_hat]
        self.tails = [s["logits_tail"] for s in steps]
        self.step_tokens = [s["tokens"] for s in steps]
        self.seconds = {}  # last measured seconds of "prefix", each scale k (its step, tail and next) and "decoder"
        # a device backend runs asynchronously: a budget needs real per-scale times, so it waits for the GPU
        self._sync = getattr(getattr(backend, "device", None), "synchronize", None) if backend.on_device else None

    def guess(self, k) -> float:
        """Seconds that scale k (or "decoder") should take: its last measured time; before one is measured,
        the previous scale's time scaled up by its token ratio, and twice the prefix (encoder) for the decoder."""
        if k in self.seconds:
            return self.seconds[k]
        if k == "decoder":
            return 2 * self.seconds.get("prefix", 0.0)
        return self.guess(k - 1) * max(1.0, self.step_tokens[k] / self.step_tokens[k - 1])

    def run(self, timings: dict, sampler=None, codebook=None, max_scale: int | None = None,
            deadline: float | None = None) -> int:
        """Run the bound calls on `self.image`; afterwards `self.depth` and `self.tokens` hold the results.

        max_scale: run scales 0..max_scale-1 only (default: all). deadline: a time.perf_counter() value; scale
        k >= 1 is skipped (with all after it) when the time now plus its guessed time plus the decoder's would
        pass it. The first scale always runs. Returns the number of scales run; the decoder decodes their f_hat.
        """
        backend = self.backend
        mode = "expect" if self.in_graph_expect and in_step_graph(sampler) else "argmax"
        if mode == "expect":
            sampler = None  # the step graph ran it: tokens are its argmax, h_expect feeds next_k
        scales = self.scales[mode]
        self.f_hat[0][:] = 0  # step 0 adds to an empty latent (f_hat[0] also serves as a later output)
        backend.upload(self.image, self.f_hat[0])
        sync = self._sync if deadline is not None else None
        t0 = time.perf_counter()
        self.prefix[1]()
        if sync:
            sync()
        timings["prefix"] = self.seconds["prefix"] = time.perf_counter() - t0
        used = 0
        for k in range(max_scale or len(scales)):
            if k and deadline is not None and time.perf_counter() + self.guess(k) + self.guess("decoder") > deadline:
                break
            t_scale = time.perf_counter()
            for name, call in scales[k]:
                t0 = time.perf_counter()
                call()
                if name in self.sample_after and sampler is not None:
                    n = self.tails[k]
                    backend.download(self.logits[k])
                    idx, h = sampler(k, self.logits[k][:, -n:], codebook)
                    self.tokens[k][:, -n:] = idx
                    self.h_tail[k][:] = h
                    backend.upload(self.tokens[k], self.h_tail[k])
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
            if sync:
                sync()
            self.seconds[k] = time.perf_counter() - t_scale
            used = k + 1
        t0 = time.perf_counter()
        self.decoders[used % 2]()
        if sync:
            sync()
        timings["decoder"] = self.seconds["decoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        backend.download(self.depth, *self.tokens[:used])
        if backend.on_device:
            timings["download"] = time.perf_counter() - t0
        return used


class DepthRuntime:
    """Depth from images with an exported bundle, on onnxruntime or TensorRT.

    Args:
        bundle_dir: a folder written by `depthart export`.
        backend: "ort" (onnxruntime; CPU, CUDA or TensorRT execution providers) or "trt" (TensorRT engines
            built with `depthart export --trt`, run natively with device-resident buffers; needs TensorRT,
            polygraphy and an NVIDIA GPU). Defaults to "ort".
        device: for "ort", execution providers in order of preference, comma-separated: "cpu", "cuda",
            "trt". Defaults to "cpu". Ignored by "trt".
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        tf32: let onnxruntime's CUDA provider run fp32 MatMul/Conv in TF32 (faster on Ampere and newer, about
            1e-3 relative error). Defaults to False: fp32, as the parity figures assume.
        sampler: token choice per scale when `predict` is given none: "auto" (default) follows the bundle's
            manifest (the sampler its checkpoint recommends; greedy when it names none), "greedy" is the step
            graph's argmax, "expect" the expected code vector (runtime.sampling.Expected). The name in use
            is `self.sampler`.
        verify: check the bundle's files against the sizes and sha256 its manifest records (runtime/integrity.py):
            True (default) hashes each file unless its size and mtime are those of its last check here,
            "full" re-hashes everything, False checks sizes only. What was checked: `self.verified`.
        max_pixels: image files above this many pixels are refused (depthart.preprocess.MAX_PIXELS).
        max_scale, budget_ms: the defaults of `predict_batch`'s (None: all scales, no budget), so that code that
            calls `predict(image)` (videos, bags, the live view) stops early too.
        profile_dir: "ort" only: onnxruntime's profiler on, one JSON file per graph there (`depthart bench --profile`).

    One runtime serves one thread at a time: `predict` holds a lock, so sharing a runtime between
    threads is safe but serialised; for parallel work create one runtime per thread.

    TensorRT engines have the batch size they were built with: smaller batches are padded to it
    (with zero images) and larger ones run in several passes.
    """

    def __init__(self, bundle_dir, backend: str = "ort", device: str = "cpu", threads: int | None = None,
                 sampler: str = "auto", tf32: bool = False, verify=True, max_pixels: int = MAX_PIXELS,
                 max_scale: int | None = None, budget_ms: float | None = None, profile_dir: str | None = None):
        self.bundle_dir = os.fspath(bundle_dir)
        self.manifest = load_manifest(self.bundle_dir)
        self.num_scales = len(self.manifest["steps"])
        self.max_scale, self.budget_ms = self._check_stop(max_scale, budget_ms)
        self.last_scales = None  # scales used by the last prediction
        mode = {True: "cached", False: "sizes"}.get(verify, verify)
        self.verified = verify_bundle(self.bundle_dir, self.manifest, mode, engines=backend == "trt")
        self.max_pixels = max_pixels
        if sampler != "auto" and sampler not in SAMPLERS:
            raise DepthartError(f"unknown sampler {sampler!r}; use auto, {' or '.join(SAMPLERS)}")
        self.sampler = manifest_sampler(self.manifest) if sampler == "auto" else sampler
        self._sampler = make_sampler(self.sampler)  # None for greedy: the step graph's argmax
        parity = self.manifest.get("parity") or {}
        if parity.get("passed") is False:
            raise DepthartError(f"{self.bundle_dir}: its graphs failed the parity check against PyTorch at export "
                                f"({'; '.join(parity.get('failures', [])[:3])}); re-export it")
        try:
            if backend == "ort":
                from .backends.ort import OrtBackend

                self.backend = OrtBackend(self.bundle_dir, self.manifest, device=device, threads=threads, tf32=tf32,
                                          profile_dir=profile_dir)
            elif backend == "trt":
                from .backends.trt import TrtBackend

                self.backend = TrtBackend(self.bundle_dir, self.manifest)
            else:
                raise DepthartError(f"unknown backend {backend!r}; use ort or trt")
        except DepthartError:
            raise
        except Exception as e:  # onnxruntime, protobuf, TensorRT: one line (their messages name the file)
            text = " ".join(str(e).split())[:400]
            raise DepthartError(f"{self.bundle_dir}: the {backend} backend could not load the bundle "
                                f"({type(e).__name__}: {text}); re-copy or re-export it") from None
        self.image_size = self.manifest["image_size"]
        self.max_batch = self.manifest.get("batch", {}).get("max", 1)
        self.fixed_batch = getattr(self.backend, "fixed_batch", None)  # TensorRT: the engines' batch size
        self._plans: dict[int, _Plan] = {}
        self._lock = threading.Lock()
        if self._sampler is not None:
            self._codebook()  # a bundle without one fails here, not at the first prediction

    def _plan(self, batch: int) -> _Plan:
        if batch > self.max_batch:
            raise DepthartError(f"batch {batch} exceeds the bundle's limit ({self.max_batch})")
        if batch not in self._plans:
            self._plans[batch] = _Plan(self.backend, self.manifest, batch)
        return self._plans[batch]

    def _check_stop(self, max_scale, budget_ms):
        whole = isinstance(max_scale, (int, np.integer)) and not isinstance(max_scale, bool)
        if max_scale is not None and not (whole and 1 <= max_scale <= self.num_scales):
            raise DepthartError(f"max scale {max_scale!r} is outside 1..{self.num_scales} (the bundle's scales)")
        if budget_ms is not None and not budget_ms > 0:
            raise DepthartError(f"latency budget {budget_ms!r} ms must be above 0")
        return max_scale, budget_ms

    def predict(self, image, sampler=None, max_scale: int | None = None, budget_ms: float | None = None) -> DepthResult:
        """Depth for one image (path, PIL image or array; see depthart.preprocess).

        sampler: None (or "auto") for the runtime's own (`self.sampler`), a name ("greedy", "expect", "topk", "mean";
        see runtime.sampling.make_sampler) or a sampler object (e.g. runtime.sampling.TopKTopP(seed=0)).
        max_scale, budget_ms: stop early; see `predict_batch`.
        """
        return self.predict_batch([image], sampler, max_scale, budget_ms)[0]

    def predict_batch(self, images, sampler=None, max_scale: int | None = None,
                      budget_ms: float | None = None) -> list[DepthResult]:
        """Depth for several images in one pass through the graphs (one batch; on TensorRT, passes of the
        engines' batch size). `sampler` as for `predict`.

        Every prefix of the scales is a coarser depth map (next-scale prediction), so the loop can stop early and
        decode the latent built so far; `DepthResult.scales` (and `self.last_scales`) says how many scales ran.

        max_scale: run the first `max_scale` scales only, 1..`self.num_scales`. Defaults to the runtime's
            (all scales).
        budget_ms: a latency budget per call, in ms from the call's start (image loading and preprocessing
            included, the final resize not): each scale's wall time is measured as it runs, and the loop stops
            before a scale whose last measured time (per batch size; before the first measurement, a guess from
            the previous scale) plus the decoder's would pass the budget. The first scale always runs, so a
            budget too small for it is overrun. On a GPU the budget waits for the device after each scale.
            Defaults to the runtime's (none).
        """
        max_scale, budget_ms = self._check_stop(self.max_scale if max_scale is None else max_scale,
                                                self.budget_ms if budget_ms is None else budget_ms)
        images = list(images)
        if sampler is None or (isinstance(sampler, str) and sampler == "auto"):
            sampler = self._sampler
        elif isinstance(sampler, str):
            try:
                sampler = make_sampler(sampler)
            except ValueError as e:
                raise DepthartError(str(e)) from None
        if self.fixed_batch and len(images) > self.fixed_batch:
            return [r for i in range(0, len(images), self.fixed_batch)
                    for r in self.predict_batch(images[i:i + self.fixed_batch], sampler, max_scale, budget_ms)]
        t_start = time.perf_counter()
        deadline = None if budget_ms is None else t_start + budget_ms / 1e3
        pil = [load_image(im, max_pixels=self.max_pixels) for im in images]
        with self._lock:
            if len(pil) > self.max_batch:
                raise DepthartError(f"batch {len(pil)} exceeds the bundle's limit ({self.max_batch})")
            plan = self._plan(self.fixed_batch or len(pil))
            for i, im in enumerate(pil):
                plan.image[i] = to_model_input(im, self.image_size)
            plan.image[len(pil):] = 0  # padding up to the engines' batch size
            timings = {"preprocess": time.perf_counter() - t_start}
            used = plan.run(timings, sampler, self._codebook() if sampler is not None else None, max_scale, deadline)
            self.last_scales = used
            t0 = time.perf_counter()
            depth_maps = [resize_depth(plan.depth[i, 0], im.height, im.width) for i, im in enumerate(pil)]
            tokens = [[t[i, -n:].copy() for t, n in zip(plan.tokens[:used], plan.tails)] for i in range(len(pil))]
        timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        return [DepthResult(d, timings, t, used) for d, t in zip(depth_maps, tokens)]

    def _codebook(self) -> np.ndarray:
        if not hasattr(self, "_cb"):
            self._cb = load_codebook(self.bundle_dir, self.manifest)
        return self._cb

    def describe(self) -> str:
        """The backend and its providers, and the sampler when it is not greedy."""
        d = self.backend.describe()
        return d if self.sampler == "greedy" else f"{d}, sampler {self.sampler}"
