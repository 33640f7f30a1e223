"""The VQ-VAE objective: reconstruction + VAR-style multi-scale codebook/commitment losses, dead codes.

Quantisation is the VQ-VAE's own residual recursion (`MultiScaleQuantizer.residual_tokens` /
`accumulate`), with gradients:

* codebook and phi: MSE(f_hat_k, sg[f]) after every scale k (f_hat_k = the cumulative
  reconstruction), averaged over the K scales;
* encoder: beta * MSE(sg[f_hat_k], f) (commitment, beta 0.25 as VAR), plus the reconstruction
  loss through the straight-through estimator f + sg[f_hat - f];
* decoder: the reconstruction loss (L1 or MSE) of the unclamped decoder output.

Dead codes: a code that no scale picked for `dead_after` steps is re-initialised from a randomly
chosen residual vector of the current batch (what the quantiser was asked to explain), so every
code gets used. `CodeUsage` holds the per-code "last used" step; it is part of the trainer state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..resize import resize

BETA = 0.25  # VAR's commitment weight
PIN_FRACTION = 0.25  # image_to_depth_loss: the share of each batch whose depth latents are held


def vqvae_loss(vae, x_B3HW: torch.Tensor, recon: str = "l1", beta: float = BETA, sample_weight=None):
    """Returns (loss, metrics, aux): aux = {"hits": (V,) code counts, "residuals": (N, cvae) vectors}.

    sample_weight: optional (B,) weights of each sample's reconstruction loss (normalised to mean 1),
    e.g. to favour the depth maps, whose reconstruction bounds the depth model's accuracy.
    """
    q = vae.quantize
    f = vae.encode(x_B3HW)
    f_ng = f.detach()
    f_hat = torch.zeros_like(f)
    vq = f.new_zeros(())
    hits = torch.zeros(q.embedding.num_embeddings, device=f.device)
    residuals = []
    K = q.cfg.num_scales
    for k in range(K):
        with torch.no_grad():
            rest = resize(f_ng - f_hat.detach(), q.cfg.patch_nums[k], "area")
            idx = q.nearest(rest)
            residuals.append(rest.permute(0, 2, 3, 1).reshape(-1, rest.shape[1]))
            hits += torch.bincount(idx.flatten(), minlength=hits.numel()).float()
        f_hat = q.accumulate(k, f_hat, q.embed(k, idx))
        vq = vq + F.mse_loss(f_hat, f_ng) + beta * F.mse_loss(f_hat.detach(), f)
    vq = vq / K
    f_st = f + (f_hat - f).detach()  # straight-through: values of f_hat, gradients to the encoder
    out = vae.decode(f_st, clamp=False)
    err = (out - x_B3HW).abs() if recon == "l1" else (out - x_B3HW) ** 2
    if sample_weight is None:
        rec = err.mean()
    else:
        w = sample_weight.to(err.dtype) / sample_weight.float().mean()
        rec = (err.mean(dim=(1, 2, 3)) * w).mean()
    loss = rec + vq
    used = (hits > 0).float().mean().item()
    metrics = {"loss": loss.item(), "rec": rec.item(), "vq": vq.item(), "code_usage": used}
    return loss, metrics, {"hits": hits, "residuals": torch.cat(residuals)}


class CodeUsage:
    """Per-code step of last use; `revive` re-initialises codes unused for `dead_after` steps."""

    def __init__(self, vocab: int, dead_after: int):
        self.last_used = torch.zeros(vocab, dtype=torch.long)
        self.dead_after = dead_after

    @torch.no_grad()
    def update(self, step: int, embedding: torch.nn.Embedding, hits: torch.Tensor, residuals: torch.Tensor,
               generator: torch.Generator | None = None) -> int:
        """Record this step's hits; revive dead codes. Returns how many codes were re-initialised."""
        self.last_used[hits.cpu() > 0] = step
        if self.dead_after <= 0:
            return 0
        dead = (step - self.last_used >= self.dead_after).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        pick = torch.randint(residuals.shape[0], (dead.numel(),), generator=generator)
        embedding.weight[dead.to(embedding.weight.device)] = residuals[pick.to(residuals.device)].to(
            embedding.weight.dtype)
        self.last_used[dead] = step
        return int(dead.numel())

    def state_dict(self):
        return {"last_used": self.last_used.clone(), "dead_after": self.dead_after}

    def load_state_dict(self, state):
        self.last_used = state["last_used"].clone()
        self.dead_after = state["dead_after"]


def silog_loss(pred_BHW: torch.Tensor, target_BHW: torch.Tensor, valid_BHW: torch.Tensor | None = None,
               lam: float = 0.85, floor: float = 1e-3) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al.), mean over the batch: with e = log p - log t on the valid
    pixels of each map, mean(e^2) - lam * mean(e)^2. Both maps are relative depth, floored at `floor`
    (depth_target's 0..1 range): a relative error costs the same near and far, as AbsRel counts it."""
    e = torch.log(pred_BHW.clamp(min=floor)) - torch.log(target_BHW.clamp(min=floor))
    v = torch.ones_like(e) if valid_BHW is None else valid_BHW.to(e.dtype)
    n = v.sum((1, 2)).clamp(min=1)
    m1, m2 = (e * v).sum((1, 2)) / n, (e * e * v).sum((1, 2)) / n
    return (m2 - lam * m1 * m1).mean()


def absrel_loss(pred_BHW: torch.Tensor, target_BHW: torch.Tensor, valid_BHW: torch.Tensor | None = None,
                floor: float = 1e-3) -> torch.Tensor:
    """AbsRel after median scaling, as `depthart.metrics` scores a map (mean over the batch): each map is scaled by
    the lower median of target / pred over its valid pixels (no gradient through the scale), then
    mean(|s * pred - target| / target). Both maps floored at `floor`. Unlike SILog it is asymmetric: a map twice
    too far costs 1, half too near 0.5, so it pulls an unsure prediction toward the near side, as the metric does."""
    p, t = pred_BHW.clamp(min=floor), target_BHW.clamp(min=floor)
    v = torch.ones_like(p, dtype=torch.bool) if valid_BHW is None else valid_BHW.bool()
    with torch.no_grad():
        ratio = torch.where(v, t / p, torch.full_like(p, float("nan"))).flatten(1)
        scale = ratio.nanquantile(0.5, dim=1, interpolation="lower").nan_to_num(1.0)
    err = (scale[:, None, None] * p - t).abs() / t * v
    return (err.sum((1, 2)) / v.sum((1, 2)).clamp(min=1)).mean()


def decoded_depth(vae, f_BChw: torch.Tensor) -> torch.Tensor:
    """The relative depth (B, H, W) in ~[0, 1] that the decoder makes of a latent: its unclamped output (so the
    gradient reaches the ends of the range), channels averaged."""
    return (vae.decode(f_BChw, clamp=False).float() + 1).mean(1) / 2


def depth_of(depth_B3HW: torch.Tensor) -> torch.Tensor:
    """The normalised 3-channel depth map (B, 3, H, W) in [-1, 1] -> relative depth (B, H, W) in [0, 1]."""
    return (depth_B3HW[:, 0].float() + 1) / 2


def decoded_silog(vae, f_BChw: torch.Tensor, depth_B3HW: torch.Tensor, valid_BHW: torch.Tensor | None = None):
    """`silog_loss` of the depth the decoder makes of a latent (`decoded_depth`) against the normalised 3-channel
    depth map, on the valid pixels."""
    return silog_loss(decoded_depth(vae, f_BChw), depth_of(depth_B3HW), valid_BHW)


UNET_L1 = 0.5  # image_unet_loss: weight of the L1 term that holds the U-Net's map at the targets' scale


def image_unet_loss(vae, image_B3HW: torch.Tensor, depth_B3HW: torch.Tensor, valid_BHW: torch.Tensor | None = None):
    """A U-Net image side (`train-vqvae --image-unet`) taught on its own map: SILog (`silog_loss`) of its depth
    guess against the normalised depth map, plus UNET_L1 x the mean absolute error on the valid pixels, which holds
    the guess at the targets' scale (depth / q98): the depth encoder that reads it was trained on maps of that
    scale. Nothing else runs (no encoder, no decoder). Returns (loss, metrics)."""
    pred, target = vae.image_depth(image_B3HW)[:, 0].float(), depth_of(depth_B3HW)
    v = torch.ones_like(pred) if valid_BHW is None else valid_BHW.to(pred.dtype)
    s = silog_loss(pred, target, valid_BHW)
    l1 = ((pred - target).abs() * v).sum() / v.sum().clamp(min=1)
    loss = s + UNET_L1 * l1
    return loss, {"unet_silog": s.item(), "unet_l1": l1.item(), "loss": loss.item()}


def image_to_depth_loss(vae, ref, image_B3HW: torch.Tensor, depth_B3HW: torch.Tensor, weight: float, pin: float,
                        silog: float = 0.0, valid_BHW: torch.Tensor | None = None):
    """The image side of a trained VQ-VAE taught to see depth (`depthart train-vqvae --image-to-depth`).

    The transformer reads an image only through the VQ-VAE's latent pyramid of it, and a 4-block
    transformer learns the image-to-layout map slowly (docs/experiments.md); the encoder is a CNN
    that can. With `ref` the frozen VQ-VAE the run started from and f_D = ref.encode(depth):
    loss = weight * MSE(encode(image), f_D) + pin * MSE(encode(depth), f_D): an image's latent is
    regressed onto its depth map's latent, and the depth maps' own latents (hence their tokens and
    the transformer's vocabulary) are held where `ref` put them, on the first quarter of the batch
    (PIN_FRACTION: the encoder's convolutions are most of the step). With silog > 0 (`--depth-silog`)
    it adds silog x `silog_loss` of the depth that the (frozen) decoder makes of the image's latent
    against the target, on the valid pixels: the latent MSE treats an error near and far alike, the
    metric (AbsRel) does not. Only the encoder is meant to train. With an untied image encoder
    (`VQVAE.untied`, `train-vqvae --untie-image-encoder N`) the image's latent is its encoder's and that is what
    trains; the depth maps' encoder does not, so there is no pin term. Returns (loss, metrics).
    """
    with torch.no_grad():
        f_D = ref.encode(depth_B3HW).float()
    f_img = vae.encode_image(image_B3HW).float()
    img = F.mse_loss(f_img, f_D)
    loss, metrics = weight * img, {"img_to_depth": img.item()}
    if silog > 0:
        s = decoded_silog(vae, f_img, depth_B3HW, valid_BHW)
        loss = loss + silog * s
        metrics["depth_silog"] = s.item()
    if pin > 0 and not vae.untied:  # an untied image encoder leaves the depth side alone: nothing to hold
        n = max(1, round(len(depth_B3HW) * PIN_FRACTION))
        held = F.mse_loss(vae.encode(depth_B3HW[:n]).float(), f_D[:n])
        loss = loss + pin * held
        metrics["depth_pin"] = held.item()
    metrics["loss"] = loss.item()
    return loss, metrics
