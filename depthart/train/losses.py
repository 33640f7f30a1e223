"""Training objectives of the transformer: DepthART (the paper's) and VAR teacher forcing (the baseline).

DepthART (arXiv 2409.15010, `docs/training.md`): per batch the model runs its own cached,
scale-by-scale loop. At scale k the target is the *dynamic residual target*: the nearest codes of
area_k(f_D - f_hat_<k), where f_D is the continuous VQ-VAE latent of the ground-truth depth and
f_hat_<k the accumulation of the model's own greedy predictions so far. Inputs of the next scale
come from those predictions, detached; the KV cache is not, so one backward pass reaches every
scale's activations through the cached keys/values.

Both objectives: cross-entropy with weight 1/L per token, mean over the batch (= the mean over all
tokens, since every sample has the same L), no label smoothing. Two options of this project, both off
by default: per-scale weights (`scale_balance`) and soft code targets (`soft_tau`: the CE's target is
softmax(-||r - e_v||^2 / tau) over the codes e_v instead of the nearest code alone, where r is the
residual the scale should add; near-tie codes then share the target; docs/experiments.md). A third
option, `code_mse`, adds a regression term: the squared distance between the code vector the model
expects, sum_v softmax(logits)_v e_v (what the `expect` sampler feeds), and the residual r itself, so a
wrong pick near the right code costs little and one far away costs much (the CE alone does not know which
codes are near each other). A fourth, `prefix_aux`, trains the image prefix's own outputs, which
the paper's loss leaves unused: the prefix token of scale k at position j predicts the depth there,
the nearest code of area_k(f_D) (CE, plus the `code_mse` regression onto area_k(f_D) itself), so the
image tokens that the depth tokens attend to are asked to carry depth (docs/experiments.md section 7).
Inference does not change: the prefix's logits are computed and dropped there as before. A fifth,
`depth_silog`, scores the depth itself: the latent the `expect` sampler would build from the logits of
every scale (`expected_latent`) goes through the frozen decoder and a scale-invariant log loss against the
ground-truth map; the CE and the code regression are distances in the latent, which weigh an error near
and far alike, where AbsRel counts a near one several times over (docs/experiments.md section 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..model import KVCache
from ..resize import resize

REC_WEIGHT = 10.0  # the release's weight of the latent MSE (`rec_loss`)
LOOP_INPUTS = ("greedy", "expect")  # what of the model's own prediction DepthART's loop feeds on (`refine_loop`)


@dataclass
class LoopOutput:
    """What `refine_loop` returns.

    logits: per scale trained with CE, (B, pn*pn, V).
    targets: per scale, the dynamic targets (B, pn*pn) int64 (all K scales, also the soft one).
    tokens: per scale, the tokens the loop chose (B, pn*pn); the last is the argmax under `soft_last`.
    f_hat: the final latent (B, cvae, h, w); carries gradients only through a soft last scale.
    """

    logits: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    soft_targets: list = field(default_factory=list)  # per CE scale, (B, pn*pn, V), only with soft_tau > 0
    residuals: list = field(default_factory=list)  # per scale, area_k(f_D - f_hat_<k) (B, pn*pn, cvae), no grad
    prefix_logits: torch.Tensor | None = None  # (B, L, V): the image prefix's outputs of step 0
    f_hat: torch.Tensor | None = None


def refine_loop(model, img_B3HW: torch.Tensor, f_D: torch.Tensor, choose=None, soft_last: bool = False,
                cache_dtype=None, image_latents=None, soft_tau: float = 0.0, inputs: str = "greedy") -> LoopOutput:
    """The model's own autoregressive loop over all K scales with dynamic targets (DepthART training).

    Args:
        model: a `DepthART`.
        img_B3HW: images in [-1, 1].
        f_D: the continuous VQ-VAE latent of the depth targets (B, cvae, h, w), no grad.
        choose: optional `choose(k, logits_BlV, target_Bl) -> idx_Bl`, the tokens that enter f_hat;
            default greedy argmax (training). Tests pass the targets to check the recursion.
        soft_last: the release's `rec_loss` variant: the last scale is not a CE scale; its code is
            Gumbel-softmax(logits, tau 1, soft) @ codebook, so f_hat carries gradients to its logits.
        cache_dtype: dtype of the KV cache (the autocast dtype under mixed precision).
        image_latents: the prefix's VQ-VAE latents if already computed (the trainer's latent cache).
        soft_tau: > 0: also record each CE scale's soft code target (`soft_code_targets`).
        inputs: what of its own prediction enters f_hat (hence the next scale's input and the dynamic
            targets): "greedy", the argmax code (the paper's), or "expect", the expected code vector
            sum_v softmax(logits)_v e_v, the `expect` sampler's; both detached. With "expect" the loop is
            the `expect` sampler's inference loop step for step.

    Runs with grad enabled (the cache then writes out of place, see `KVCache.update`). The target
    of scale k is computed before scale k's prediction is added to f_hat.
    """
    from ..sampling import Expected

    if inputs not in LOOP_INPUTS:
        raise ValueError(f"inputs must be one of {LOOP_INPUTS}, got {inputs!r}")
    cfg, q = model.cfg, model.vae.quantize
    B, K = img_B3HW.shape[0], cfg.num_scales
    cache = KVCache(cfg, B, img_B3HW.device, cache_dtype or model.pos_1LC.dtype)
    cond = model.cond(model.null_labels(B, img_B3HW.device))
    codebook = q.embedding.weight
    f_hat = f_D.new_zeros(f_D.shape)
    x = torch.cat([model.image_prefix(img_B3HW, image_latents), model.start_tokens(cond)], dim=1)
    out = LoopOutput()
    for k, (begin, _) in enumerate(cfg.step_ranges()):
        pn = cfg.patch_nums[k]
        logits = model.step(x, cond, cache, begin)
        if k == 0:
            out.prefix_logits = logits[:, : cfg.tokens_per_map]
        logits = logits[:, -pn * pn:]  # (B, pn*pn, V)
        with torch.no_grad():
            rest = q.residual(k, f_D, f_hat)  # what the model has not explained yet
            dist = q.code_distances(rest)
            target = dist.argmin(-1)
        out.targets.append(target)
        out.residuals.append(rest.flatten(2).transpose(1, 2))
        if k == K - 1 and soft_last:
            soft = F.gumbel_softmax(logits.float(), tau=1.0, hard=False)  # (B, l, V)
            h = (soft @ codebook.float()).to(f_hat.dtype)  # (B, l, cvae), differentiable
            out.tokens.append(logits.detach().argmax(-1))
            f_hat = q.accumulate(k, f_hat, q.code_map(k, h))
            break
        out.logits.append(logits)
        if soft_tau > 0:
            out.soft_targets.append(soft_from_distances(dist, soft_tau))
        with torch.no_grad():
            idx = logits.argmax(-1) if choose is None else choose(k, logits, target)
            out.tokens.append(idx)
            if inputs == "expect":
                h = q.code_map(k, Expected()(k, logits, codebook)[1].to(f_hat.dtype))
            else:
                h = q.embed(k, idx)
            f_hat = q.accumulate(k, f_hat, h)
            if k + 1 < K:
                x = model.embed_scale(k + 1, q.next_input(k + 1, f_hat))  # own prediction, detached
    out.f_hat = f_hat
    return out


def soft_from_distances(dist_BlV: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft code target softmax(-d / tau) from squared distances (B, l, V) to every code."""
    return (-dist_BlV / tau).softmax(-1)


@torch.no_grad()
def soft_code_targets(quantize, k: int, f: torch.Tensor, f_hat: torch.Tensor, tau: float) -> torch.Tensor:
    """Scale k's soft target (B, pn*pn, V): softmax(-||area_k(f - f_hat) - e_v||^2 / tau) over the codes e_v.

    tau -> 0 gives the one-hot nearest code (the hard target); a tau near the squared gap between the
    nearest and second-nearest code lets near ties share the target."""
    return soft_from_distances(quantize.code_distances(quantize.residual(k, f, f_hat)), tau)


def scale_weights(token_counts, balance: float = 0.0) -> torch.Tensor:
    """Weight of each scale's tokens in the CE: proportional to n_k ** -balance, normalised so the
    weights of all tokens sum to 1. balance 0: every token counts the same (VAR's and the paper's
    loss); 1: every scale counts the same, so the few coarse tokens, whose errors every finer
    scale inherits, are not drowned by the finest scale's many (docs/experiments.md)."""
    n = torch.tensor([float(c) for c in token_counts])
    w = n.pow(-balance)
    return w / (w * n).sum()


def token_weights(token_counts, balance: float, device) -> torch.Tensor:
    """`scale_weights` repeated per token: (sum of counts,)."""
    return torch.repeat_interleave(scale_weights(token_counts, balance), torch.tensor(token_counts)).to(device)


def _ce_and_accuracy(logits_list, targets_list, balance: float = 0.0, soft_list=None):
    """CE over all tokens of the given scales (weighted per scale, `scale_weights`), against the hard
    targets or, with `soft_list` (per scale (B, l, V) distributions), against those; and the per-scale
    argmax accuracy (always against the hard targets)."""
    logits = torch.cat(logits_list, dim=1)
    targets = torch.cat(targets_list, dim=1)
    if balance == 0.0 and not soft_list:
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    else:
        if soft_list:
            per_token = -(torch.cat(soft_list, dim=1) * logits.float().log_softmax(-1)).sum(-1)  # (B, l)
        else:
            per_token = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, l)
        ce = (per_token * token_weights([t.shape[1] for t in targets_list], balance, logits.device)).sum(1).mean()
    acc = [(lg.detach().argmax(-1) == t).float().mean().item() for lg, t in zip(logits_list, targets_list)]
    return ce, acc


def expected_code_error(logits_list, residuals_list, codebook_VC: torch.Tensor, balance: float = 0.0) -> torch.Tensor:
    """Regression term: ||sum_v softmax(logits)_v e_v - r||^2 per token (r: the residual the scale should
    add, (B, l, cvae) per scale), weighted per scale like the CE (`scale_weights`), mean over the batch."""
    e_VC = codebook_VC.detach().float()
    per_token = torch.cat([(lg.float().softmax(-1) @ e_VC - r.float()).square().sum(-1)
                           for lg, r in zip(logits_list, residuals_list)], dim=1)  # (B, l)
    return (per_token * token_weights([r.shape[1] for r in residuals_list], balance, per_token.device)).sum(1).mean()


def _add_code_mse(loss, metrics, model, logits_list, residuals_list, weight: float, balance: float):
    """loss + weight * `expected_code_error`, recorded in metrics as code_mse; unchanged for weight 0."""
    if weight <= 0:
        return loss
    err = expected_code_error(logits_list, residuals_list, model.vae.quantize.embedding.weight, balance)
    metrics["code_mse"] = err.item()
    return loss + weight * err


def prefix_aux_loss(model, prefix_logits_BLV: torch.Tensor, f_D: torch.Tensor, balance: float = 0.0,
                    code_mse: float = 0.0):
    """The image prefix's outputs against the depth at their own scale and place: CE to the nearest code of
    area_k(f_D) (weighted per scale, `scale_weights`) + code_mse * `expected_code_error` onto area_k(f_D).
    Returns (loss, ce, accuracy over all prefix tokens)."""
    q = model.vae.quantize
    with torch.no_grad():
        maps = [resize(f_D, pn, "area") for pn in model.cfg.patch_nums]  # area_k(f_D), (B, cvae, pn, pn)
        targets = [q.code_distances(z).argmin(-1) for z in maps]
        local = [z.flatten(2).transpose(1, 2) for z in maps]  # (B, pn*pn, cvae) per scale
    per_scale = [prefix_logits_BLV[:, b:e] for b, e in model.cfg.scale_ranges()]
    ce, acc = _ce_and_accuracy(per_scale, targets, balance)
    loss = ce
    if code_mse > 0:
        loss = loss + code_mse * expected_code_error(per_scale, local, q.embedding.weight, balance)
    hits = sum(a * t.numel() for a, t in zip(acc, targets)) / sum(t.numel() for t in targets)
    return loss, ce, hits


def _add_prefix_aux(loss, metrics, model, prefix_logits, f_D, weight: float, balance: float, code_mse: float):
    """loss + weight * `prefix_aux_loss`, recorded as prefix_ce / prefix_acc; unchanged for weight 0."""
    if weight <= 0:
        return loss
    aux, ce, acc = prefix_aux_loss(model, prefix_logits, f_D, balance, code_mse)
    metrics.update(prefix_ce=ce.item(), prefix_acc=acc)
    return loss + weight * aux


def expected_latent(model, logits_list) -> torch.Tensor:
    """The final latent f_hat that the `expect` sampler builds from these logits, one (B, pn*pn, V) per scale
    (all K): sum_k phi_k(up(sum_v softmax(logits_k)_v e_v)). Differentiable in the logits; the codebook and
    phi are the frozen VQ-VAE's."""
    from ..sampling import Expected

    q = model.vae.quantize
    if len(logits_list) != q.cfg.num_scales:
        raise ValueError(f"expected_latent needs the logits of all {q.cfg.num_scales} scales, got {len(logits_list)}")
    e_VC, expect = q.embedding.weight.detach().float(), Expected()
    B = logits_list[0].shape[0]
    f_hat = e_VC.new_zeros(B, q.cfg.cvae, q.last, q.last)
    for k, lg in enumerate(logits_list):
        f_hat = q.accumulate(k, f_hat, q.code_map(k, expect(k, lg, e_VC)[1]))
    return f_hat


def _add_depth_losses(loss, metrics, model, logits_list, batch: dict, silog: float, absrel: float = 0.0):
    """loss + silog * SILog + absrel * AbsRel (median-scaled) of the decoded `expected_latent` vs batch["depth"] on
    batch["valid"] (recorded as depth_silog, depth_absrel); the decoder runs once; unchanged for weights 0."""
    if silog <= 0 and absrel <= 0:
        return loss
    from .vqvae_train import absrel_loss, decoded_depth, depth_of, silog_loss

    pred, target, valid = decoded_depth(model.vae, expected_latent(model, logits_list)), depth_of(batch["depth"]), \
        batch.get("valid")
    for name, weight, fn in (("depth_silog", silog, silog_loss), ("depth_absrel", absrel, absrel_loss)):
        if weight > 0:
            term = fn(pred, target, valid)
            metrics[name] = term.item()
            loss = loss + weight * term
    return loss


@torch.no_grad()
def depth_latent(model, depth_B3HW: torch.Tensor) -> torch.Tensor:
    """f_D: the frozen VQ-VAE's continuous latent of the normalised 3-channel depth (no grad)."""
    return model.vae.encode(depth_B3HW)


def _batch_f_D(model, batch: dict) -> torch.Tensor:
    """f_D of a batch: the cached one (batch["f_D"], `depthart.train.latent_cache`) or encoded now."""
    if "f_D" in batch:
        return batch["f_D"].float()
    return depth_latent(model, batch["depth"]).float()


def depthart_loss(model, batch: dict, rec_loss: bool = False, rec_weight: float = REC_WEIGHT, cache_dtype=None,
                  balance: float = 0.0, soft_tau: float = 0.0, code_mse: float = 0.0, prefix_aux: float = 0.0,
                  depth_silog: float = 0.0, inputs: str = "greedy", depth_absrel: float = 0.0):
    """The DepthART objective on a batch {"image", "depth"}. Returns (loss, metrics dict).

    CE over the scales' dynamic targets; with `rec_loss` the last scale is left out of the CE and
    trained through the Gumbel soft code plus rec_weight * MSE(f_hat_final, f_D). `inputs`: see `refine_loop`
    (with "expect" and depth_silog, the decoded latent is the one the `expect` sampler's own loop builds).
    metrics: loss, ce, (mse), acc (per scale: argmax vs dynamic target; the soft scale included).
    """
    f_D = _batch_f_D(model, batch)
    out = refine_loop(model, batch["image"], f_D, soft_last=rec_loss, cache_dtype=cache_dtype,
                      image_latents=batch.get("image_latents"), soft_tau=soft_tau, inputs=inputs)
    ce, acc = _ce_and_accuracy(out.logits, out.targets[: len(out.logits)], balance, out.soft_targets)
    loss, metrics = ce, {"ce": ce.item()}
    if rec_loss:
        mse = F.mse_loss(out.f_hat.float(), f_D)
        loss = ce + rec_weight * mse
        metrics["mse"] = mse.item()
        acc.append((out.tokens[-1] == out.targets[-1]).float().mean().item())
    loss = _add_code_mse(loss, metrics, model, out.logits, out.residuals[: len(out.logits)], code_mse, balance)
    loss = _add_prefix_aux(loss, metrics, model, out.prefix_logits, f_D, prefix_aux, balance, code_mse)
    loss = _add_depth_losses(loss, metrics, model, out.logits, batch, depth_silog, depth_absrel)
    metrics.update(loss=loss.item(), acc=acc)
    return loss, metrics


def teacher_forcing_loss(model, batch: dict, cache_dtype=None, balance: float = 0.0, soft_tau: float = 0.0,
                        code_mse: float = 0.0, prefix_aux: float = 0.0, depth_silog: float = 0.0,
                        depth_absrel: float = 0.0):
    """VAR teacher forcing: GT multi-scale tokens of the depth as inputs and targets, one masked pass.

    Returns (loss, metrics dict with loss, ce, acc per scale).
    """
    f_D = _batch_f_D(model, batch)
    q = model.vae.quantize
    with torch.no_grad():
        tokens, f_hats = q.tokenize(f_D)
        before = [f_hats[k - 1] if k else torch.zeros_like(f_D) for k in range(len(tokens))]  # f_hat_<k
        soft = [soft_code_targets(q, k, f_D, before[k], soft_tau) for k in range(len(tokens))] if soft_tau > 0 else None
        residuals = [q.residual(k, f_D, before[k]).flatten(2).transpose(1, 2) for k in range(len(tokens))] \
            if code_mse > 0 else None
    # on CPU the cached scale-by-scale form (same logits) avoids a slow masked fused attention
    logits = model.forward_teacher(batch["image"], tokens, batch.get("image_latents"), cached=f_D.device.type == "cpu",
                                   cache_dtype=cache_dtype, with_prefix=prefix_aux > 0)  # (B, [2]L, V)
    L = model.cfg.tokens_per_map
    prefix_logits, logits = (logits[:, :L], logits[:, L:]) if prefix_aux > 0 else (None, logits)
    per_scale = [logits[:, b:e] for b, e in model.cfg.scale_ranges()]
    ce, acc = _ce_and_accuracy(per_scale, tokens, balance, soft)
    metrics = {"ce": ce.item()}
    loss = _add_code_mse(ce, metrics, model, per_scale, residuals, code_mse, balance)
    loss = _add_prefix_aux(loss, metrics, model, prefix_logits, f_D, prefix_aux, balance, code_mse)
    loss = _add_depth_losses(loss, metrics, model, per_scale, batch, depth_silog, depth_absrel)
    metrics.update(loss=loss.item(), acc=acc)
    return loss, metrics


LOSSES = {"depthart": depthart_loss, "var": teacher_forcing_loss}
