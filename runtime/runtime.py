"""DepthRuntime: the scale loop over a bundle's graphs. numpy + a backend, never torch.

Per batch size, every buffer is allocated once (the KV cache for the whole sequence, each step's
logits/tokens/code vectors, the next-scale inputs, two f_hat buffers used in turn, the depth map)
and every graph call is bound to its buffers once; a prediction then only preprocesses, runs the
bound calls in order and resizes the depth maps back. Steps write their new keys/values straight
into the cache (slots [1 + begin_k, 1 + end_k), layout in the manifest's `kv_cache`).

The same plan drives both backends. On onnxruntime the graphs use the host buffers themselves; on
TensorRT every buffer has a device twin (views stay views), and the plan says when the host side
changes or is needed: `upload` what the host writes (image, zeroed f_hat, a sampler's choices),
`download` what it reads (depth and tokens at the end, logits for a sampler) and `bind_copy` for
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
from .manifest import SAMPLERS, load_manifest, manifest_sampler
from .sampling import make_sampler


@dataclasses.dataclass
class DepthResult:
    """One image's prediction.

    depth: float32 (H, W) relative depth in [0, 1] at the input's size, 0 = near.
    timings: seconds per stage of the batch it ran in ("preprocess", "prefix", "step_k", "next_k",
        "decoder", "postprocess", "total"); shared by all images of a batch. On TensorRT the graph
        stages are launch times (the GPU runs asynchronously) and "download" holds the wait for
        the GPU plus the copy of the results back.
    tokens: per scale, the chosen token indices (pn*pn,) int64.
    """

    depth: np.ndarray
    timings: dict
    tokens: list


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
        self.calls = [("prefix", backend.bind("prefix", {"image": self.image}, {"x": x}))]
        self.logits, self.tokens, self.h_tail = [], [], []
        self.sample_after = {}
        for s in steps:
            k, (a, b), n, l = s["scale"], s["slots"], s["logits_tail"], s["tokens"]
            logits = np.zeros((B, l, cfg["vocab_size"]), f32)
            tokens = np.zeros((B, l), np.int64)
            h = np.zeros((B, l, cfg["cvae"]), f32)
            self.calls.append((f"step_{k}", backend.bind(
                "step", {"x": x, "past_k": self.cache_k[:a], "past_v": self.cache_v[:a]},
                {"logits": logits, "tokens": tokens, "h": h, "new_k": self.cache_k[a:b], "new_v": self.cache_v[a:b]})))
            # the next-scale graph takes the last n code vectors (all of them except at step 0)
            h_tail = h if n == l else np.zeros((B, n, cfg["cvae"]), f32)
            last = f"step_{k}"
            if h_tail is not h:
                last = f"tail_{k}"
                self.calls.append((last, backend.bind_copy(h_tail, h[:, -n:])))
            self.sample_after[last] = k  # a sampler replaces the greedy code vectors here
            f_in, f_out = self.f_hat[k % 2], self.f_hat[(k + 1) % 2]
            outs = {"f_hat_out": f_out}
            if k + 1 < len(steps):
                x = np.zeros((B, steps[k + 1]["tokens"], cfg["width"]), f32)
                outs["x_next"] = x
            self.calls.append((f"next_{k}", backend.bind(f"next_{k}", {"f_hat": f_in, "h": h_tail}, outs)))
            self.logits.append(logits)
            self.tokens.append(tokens)
            self.h_tail.append(h_tail)
        f_final = self.f_hat[len(steps) % 2]
        self.calls.append(("decoder", backend.bind("decoder", {"f_hat": f_final}, {"depth": self.depth})))
        self.tails = [s["logits_tail"] for s in steps]

    def run(self, timings: dict, sampler=None, codebook=None):
        """Run the bound calls on `self.image`; afterwards `self.depth` and `self.tokens` hold the results."""
        backend = self.backend
        self.f_hat[0][:] = 0  # step 0 adds to an empty latent (f_hat[0] also serves as a later output)
        backend.upload(self.image, self.f_hat[0])
        for name, call in self.calls:
            t0 = time.perf_counter()
            call()
            k = self.sample_after.get(name) if sampler is not None else None
            if k is not None:
                n = self.tails[k]
                backend.download(self.logits[k])
                idx, h = sampler(k, self.logits[k][:, -n:], codebook)
                self.tokens[k][:, -n:] = idx
                self.h_tail[k][:] = h
                backend.upload(self.tokens[k], self.h_tail[k])
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        backend.download(self.depth, *self.tokens)
        if backend.on_device:
            timings["download"] = time.perf_counter() - t0


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

    One runtime serves one thread at a time: `predict` holds a lock, so sharing a runtime between
    threads is safe but serialised; for parallel work create one runtime per thread.

    TensorRT engines have the batch size they were built with: smaller batches are padded to it
    (with zero images) and larger ones run in several passes.
    """

    def __init__(self, bundle_dir, backend: str = "ort", device: str = "cpu", threads: int | None = None,
                 sampler: str = "auto", tf32: bool = False, verify=True, max_pixels: int = MAX_PIXELS):
        self.bundle_dir = os.fspath(bundle_dir)
        self.manifest = load_manifest(self.bundle_dir)
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

                self.backend = OrtBackend(self.bundle_dir, self.manifest, device=device, threads=threads, tf32=tf32)
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

    def predict(self, image, sampler=None) -> DepthResult:
        """Depth for one image (path, PIL image or array; see depthart.preprocess).

        sampler: None (or "auto") for the runtime's own (`self.sampler`), a name ("greedy", "expect", "topk", "mean";
        see runtime.sampling.make_sampler) or a sampler object (e.g. runtime.sampling.TopKTopP(seed=0)).
        """
        return self.predict_batch([image], sampler)[0]

    def predict_batch(self, images, sampler=None) -> list[DepthResult]:
        """Depth for several images in one pass through the graphs (one batch; on TensorRT, passes of the
        engines' batch size). `sampler` as for `predict`."""
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
                    for r in self.predict_batch(images[i:i + self.fixed_batch], sampler)]
        t_start = time.perf_counter()
        pil = [load_image(im, max_pixels=self.max_pixels) for im in images]
        with self._lock:
            if len(pil) > self.max_batch:
                raise DepthartError(f"batch {len(pil)} exceeds the bundle's limit ({self.max_batch})")
            plan = self._plan(self.fixed_batch or len(pil))
            for i, im in enumerate(pil):
                plan.image[i] = to_model_input(im, self.image_size)
            plan.image[len(pil):] = 0  # padding up to the engines' batch size
            timings = {"preprocess": time.perf_counter() - t_start}
            plan.run(timings, sampler, self._codebook() if sampler is not None else None)
            t0 = time.perf_counter()
            depth_maps = [resize_depth(plan.depth[i, 0], im.height, im.width) for i, im in enumerate(pil)]
            tokens = [[t[i, -n:].copy() for t, n in zip(plan.tokens, plan.tails)] for i in range(len(pil))]
        timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        return [DepthResult(d, timings, t) for d, t in zip(depth_maps, tokens)]

    def _codebook(self) -> np.ndarray:
        if not hasattr(self, "_cb"):
            name = self.manifest.get("codebook")
            if not name:
                raise DepthartError(f"{self.bundle_dir}: bundle has no codebook; re-export it to sample")
            try:
                self._cb = np.load(os.path.join(self.bundle_dir, name), allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DepthartError(f"{os.path.join(self.bundle_dir, name)}: unreadable ({e}); re-copy or "
                                    "re-export the bundle") from None
        return self._cb

    def describe(self) -> str:
        """The backend and its providers, and the sampler when it is not greedy."""
        d = self.backend.describe()
        return d if self.sampler == "greedy" else f"{d}, sampler {self.sampler}"
