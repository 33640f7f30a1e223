"""Token selection at each scale: greedy argmax (default), the expected code vector, top-k / top-p
sampling, mean of N samples.

A sampler is called as `sampler(k, logits_BlV, codebook_VC) -> (idx_Bl, h_BlCv)`: the chosen token
indices and the latent vectors that enter f_hat (the codebook rows, or their mean for `MeanOfSamples`).
Sampling takes an explicit `torch.Generator` or seed, so results are reproducible.
"""

from __future__ import annotations

import torch


class Greedy:
    """Argmax at every scale: deterministic, what DepthART training uses."""

    def __call__(self, k, logits_BlV, codebook_VC):
        idx = logits_BlV.argmax(-1)
        return idx, codebook_VC[idx]


class Expected:
    """The code vector expected under the predicted distribution, sum_v softmax(logits)_v codebook_v,
    enters f_hat (the indices returned are the argmax). Deterministic: the limit of the release's mean of N
    samples, without its top-k / top-p filter, as N grows. Where the model is unsure it averages the
    candidates instead of committing to one, which lowers the depth error of an under-trained model
    (docs/experiments.md)."""

    def __call__(self, k, logits_BlV, codebook_VC):
        probs = logits_BlV.float().softmax(-1)
        return logits_BlV.argmax(-1), (probs @ codebook_VC.float()).to(codebook_VC.dtype)


def filter_top_k_top_p(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Logits with everything outside the top-k and outside the top-p nucleus set to -inf (a copy)."""
    logits = logits_BlV.clone()
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits.masked_fill_(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass of strictly more likely tokens already reaches top_p
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits.masked_fill_(drop, float("-inf"))
    return logits


class TopKTopP:
    """Sample one token per position from the top-k / top-p filtered softmax."""

    def __init__(self, top_k: int = 0, top_p: float = 0.0, seed: int | None = None, generator=None):
        self.top_k, self.top_p = top_k, top_p
        self.generator = generator or (torch.Generator().manual_seed(seed) if seed is not None else None)

    def draw(self, logits_BlV, n: int) -> torch.Tensor:
        B, l, V = logits_BlV.shape
        probs = filter_top_k_top_p(logits_BlV.float(), self.top_k, self.top_p).softmax(-1).view(-1, V)
        gen = self.generator
        if gen is not None and gen.device != probs.device:
            probs_cpu = probs.cpu()
            return torch.multinomial(probs_cpu, n, replacement=True, generator=gen).to(probs.device).view(B, l, n)
        return torch.multinomial(probs, n, replacement=True, generator=gen).view(B, l, n)

    def __call__(self, k, logits_BlV, codebook_VC):
        idx = self.draw(logits_BlV, 1)[..., 0]
        return idx, codebook_VC[idx]


class MeanOfSamples(TopKTopP):
    """The DepthART release's rule: draw N tokens per position (top-k 900, top-p 0.9, N = 5 there)
    and feed the mean of their code vectors. The returned indices are the first draw."""

    def __init__(self, num_samples: int = 5, top_k: int = 900, top_p: float = 0.9, seed=None, generator=None):
        super().__init__(top_k, top_p, seed, generator)
        self.num_samples = num_samples

    def __call__(self, k, logits_BlV, codebook_VC):
        idx_Bln = self.draw(logits_BlV, self.num_samples)
        return idx_Bln[..., 0], codebook_VC[idx_Bln].mean(2)


def make_sampler(name: str = "greedy", *, top_k: int | None = None, top_p: float | None = None, num_samples: int = 5,
                 seed: int | None = None):
    """Sampler by name: "greedy", "expect" (expected code vector), "topk" (top-k/top-p sampling) or "mean"
    (mean of N samples)."""
    if name == "greedy":
        return Greedy()
    if name == "expect":
        return Expected()
    if name == "topk":
        return TopKTopP(top_k or 0, top_p or 0.0, seed=seed)
    if name == "mean":
        return MeanOfSamples(num_samples, 900 if top_k is None else top_k, 0.9 if top_p is None else top_p, seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose greedy, expect, topk or mean")
