"""The exported pieces of a DepthART model, as torch modules that call the model's own code.

Nothing here re-implements model math: each wrapper only arranges inputs and outputs.

prefix      image (B, 3, S, S) in [-1, 1] -> x (B, L + first_l, C): the embedded image prefix and
            the start token(s), i.e. step 0's input.
step        x (B, l, C), past_k / past_v (1 + T, depth, B, H, D) -> logits (B, n, V),
            tokens (B, n) greedy argmax, h (B, n, cvae) their code vectors, h_expect (B, n, cvae) the code
            vectors expected under softmax(logits) (the `expect` sampler, depthart.sampling.Expected),
            new_k / new_v (l, depth, B, H, D). One graph serves every scale (dynamic l and T). n = l but at
            step 0 (T = 0: the past is the null slot alone), where n = first_l: the start token(s), not the
            image prefix (bundles exported before 2026-12-01 give n = l everywhere; the manifest's
            `step_logits` says which).
next_<k>    f_hat (B, cvae, P, P), h (B, pn_k^2, cvae) -> f_hat_out, and for k < K-1 the next
            scale's input x_next (B, pn_{k+1}^2, C). One small graph per scale.
decoder     f_hat -> depth (B, 1, S, S) in [0, 1], 0 = near.

KV cache layout (the runtime owns it): one buffer per K and V of shape (1 + seq_len, depth, B, H, D),
sequence-major so that the past of every step is a contiguous prefix. Slot 0 is a null entry
that the step graph masks out (-inf), so step 0 has a length-1 past and no tensor is ever empty.
Sequence position p lives in slot 1 + p; step k reads slots [0, 1 + begin_k) and its new keys and
values go to slots [1 + begin_k, 1 + end_k).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..sampling import Expected


class _PastKV:
    """Stands in for the model's KVCache during export: past in, new out, functional."""

    def __init__(self, past_k: torch.Tensor, past_v: torch.Tensor):
        self.past_k, self.past_v = past_k, past_v  # (1 + T, depth, B, H, D)
        self.new_k, self.new_v = [], []

    def update(self, layer, begin, k_BHlc, v_BHlc):
        self.new_k.append(k_BHlc)
        self.new_v.append(v_BHlc)
        pk = self.past_k[:, layer].permute(1, 2, 0, 3)  # (B, H, 1 + T, D)
        pv = self.past_v[:, layer].permute(1, 2, 0, 3)
        return torch.cat((pk, k_BHlc), dim=2), torch.cat((pv, v_BHlc), dim=2)

    @staticmethod
    def stack(per_layer):  # depth x (B, H, l, D) -> (l, depth, B, H, D)
        return torch.stack(per_layer, dim=0).permute(3, 0, 1, 2, 4)


class PrefixGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        m = self.model
        cond = m.cond(m.null_labels(1, image.device)).expand(image.shape[0], -1)
        return torch.cat([m.image_prefix(image), m.start_tokens(cond)], dim=1)


class StepGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, past_k, past_v):
        m = self.model
        l = x.shape[1]
        # the null class's condition, batch 1: it broadcasts over the batch in every AdaLN, and as a graph constant
        # onnxruntime folds the whole AdaLN modulation (Gemm, split, +1) into constants at load (fewer nodes per call)
        cond = m.cond(m.null_labels(1, x.device))
        cache = _PastKV(past_k, past_v)
        S = past_k.shape[0] + l
        # additive mask over keys: -inf on the null slot 0, 0 elsewhere; (1, S) broadcasts over queries
        bias = torch.zeros(1, S, dtype=x.dtype, device=x.device)
        bias = torch.cat([torch.full_like(bias[:, :1], float("-inf")), bias[:, 1:]], dim=1)
        # logits for the start token(s) only at step 0 (past = the null slot alone), for every token after it:
        # the head, argmax and expectation skip the image prefix's tokens, whose outputs nothing reads
        first = torch.sym_max(0, 2 - past_k.shape[0])  # 1 at step 0, else 0
        logits = m.step(x, cond, cache, 0, bias, logits_from=(l - m.cfg.first_l) * first)
        # the `expect` sampler in the graph (no logits leave the engine, no host softmax per scale); its indices
        # are the argmax, the greedy tokens
        tokens, h_expect = Expected()(0, logits, m.vae.quantize.embedding.weight)
        h = m.vae.quantize.embedding(tokens)
        return logits, tokens, h, h_expect, _PastKV.stack(cache.new_k), _PastKV.stack(cache.new_v)


class NextGraph(nn.Module):
    def __init__(self, model, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, f_hat, h):
        m, k = self.model, self.k
        cfg = m.cfg
        q = m.vae.quantize
        f_hat = q.accumulate(k, f_hat, q.code_map(k, h))
        if k + 1 == cfg.num_scales:
            return f_hat
        return f_hat, m.embed_scale(k + 1, q.next_input(k + 1, f_hat))


class DecoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, f_hat):
        return self.model.decode_depth(f_hat)
