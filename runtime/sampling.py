"""Token selection in numpy, mirroring depthart.sampling (greedy, expected code vector, top-k / top-p,
mean of N samples).

A sampler is called as `sampler(k, logits_BlV, codebook_VC) -> (idx_Bl, h_BlC)`. Greedy needs no
sampler (the step graph's argmax is used). Randomness comes from `numpy.random.Generator(seed)`:
runs with the same seed are identical; they draw from the same distributions as the PyTorch
samplers but not the same random numbers.
"""

from __future__ import annotations

import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def filter_top_k_top_p(logits: np.ndarray, top_k: int = 0, top_p: float = 0.0) -> np.ndarray:
    """A copy with everything outside the top-k and the top-p nucleus set to -inf."""
    out = np.array(logits, dtype=np.float64)
    V = out.shape[-1]
    if 0 < top_k < V:
        kth = np.partition(out, V - top_k, axis=-1)[..., V - top_k:V - top_k + 1]
        out[out < kth] = -np.inf
    if 0.0 < top_p < 1.0:
        order = np.argsort(-out, axis=-1, kind="stable")
        p = _softmax(np.take_along_axis(out, order, -1))
        drop_sorted = (np.cumsum(p, -1) - p) >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, -1)
        out[drop] = -np.inf
    return out


def in_step_graph(sampler) -> bool:
    """Whether `sampler` is the one exported step graphs compute themselves (output `h_expect`): `Expected`
    exactly (a subclass may change the math, so it runs on the host)."""
    return type(sampler) is Expected


class Expected:
    """sum_v softmax(logits)_v codebook_v enters f_hat; indices are the argmax (depthart.sampling.Expected)."""

    def __call__(self, k, logits_BlV, codebook_VC):
        z = np.asarray(logits_BlV, dtype=np.float64)
        h = (_softmax(z) @ np.asarray(codebook_VC, dtype=np.float64)).astype(codebook_VC.dtype)
        return z.argmax(-1).astype(np.int64), h


class TopKTopP:
    def __init__(self, top_k: int = 0, top_p: float = 0.0, seed: int | None = None):
        self.top_k, self.top_p = top_k, top_p
        self.rng = np.random.default_rng(seed)

    def draw(self, logits_BlV: np.ndarray, n: int) -> np.ndarray:
        z = filter_top_k_top_p(logits_BlV, self.top_k, self.top_p)
        p = np.exp(z - z.max(-1, keepdims=True))
        cdf = np.cumsum(p, -1)
        cdf /= cdf[..., -1:]
        u = self.rng.random(logits_BlV.shape[:-1] + (n,))
        idx = np.stack([(cdf < u[..., j:j + 1]).sum(-1) for j in range(n)], -1)
        return np.minimum(idx, logits_BlV.shape[-1] - 1).astype(np.int64)

    def __call__(self, k, logits_BlV, codebook_VC):
        idx = self.draw(logits_BlV, 1)[..., 0]
        return idx, codebook_VC[idx]


class MeanOfSamples(TopKTopP):
    """N draws per position (the DepthART release: top-k 900, top-p 0.9, N = 5), mean of their vectors."""

    def __init__(self, num_samples: int = 5, top_k: int = 900, top_p: float = 0.9, seed: int | None = None):
        super().__init__(top_k, top_p, seed)
        self.num_samples = num_samples

    def __call__(self, k, logits_BlV, codebook_VC):
        idx = self.draw(logits_BlV, self.num_samples)
        return idx[..., 0], codebook_VC[idx].mean(-2)


def make_sampler(name: str = "greedy", *, top_k: int | None = None, top_p: float | None = None, num_samples: int = 5,
                 seed: int | None = None):
    """None for greedy (in-graph argmax), else a numpy sampler."""
    if name == "greedy":
        return None
    if name == "expect":
        return Expected()
    if name == "topk":
        return TopKTopP(top_k or 0, top_p or 0.0, seed)
    if name == "mean":
        return MeanOfSamples(num_samples, 900 if top_k is None else top_k, 0.9 if top_p is None else top_p, seed)
    raise ValueError(f"unknown sampler {name!r}; choose greedy, expect, topk or mean")
