"""The frozen VQ-VAE's outputs for a finite training set, computed once (`depthart train --cache-latents`).

The transformer methods keep the VQ-VAE frozen, so what it makes of a training sample never
changes: the image prefix's latents (L, cvae) and the depth latent f_D (cvae, h, w). With a
fixed (finite) training set they are computed once, stored beside the data, and looked up by
sample index each step, so a training step runs only the transformer.

The file `latents-<vae hash>.pt` (in the rendered scene folder, else the run folder) holds
{"vae": hash, "n": N, "image_size": S, "image_latents": (N, L, cvae) float32, "f_D": (N, cvae, h, w) float32}.
The hash is of the VQ-VAE's weights, so another VQ-VAE never reads a stale cache. Batches must
come without augmentation (the trainer's loader does not flip).
"""

from __future__ import annotations

import hashlib
import os

import torch

from ..errors import DepthartError
from ..fileio import atomic_path


def vae_hash(model) -> str:
    """A short hash of the VQ-VAE's weights (the names, shapes and bytes of its state dict)."""
    h = hashlib.sha256()
    for name, t in sorted(model.vae.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class LatentCache:
    """Per-sample VQ-VAE outputs of a finite source, indexed by the batch's "index"."""

    def __init__(self, image_latents: torch.Tensor, f_D: torch.Tensor):
        self.image_latents, self.f_D = image_latents, f_D

    def add_to(self, batch: dict) -> dict:
        idx = batch["index"].long().cpu()
        out = dict(batch)
        out["image_latents"] = self.image_latents[idx].float()
        out["f_D"] = self.f_D[idx].float()
        return out

    @classmethod
    def build_or_load(cls, model, source, image_size: int, folder: str, batch_size: int = 64, log=None) -> "LatentCache":
        """Load the cache of this VQ-VAE and source from `folder`, or compute it and store it there."""
        n = getattr(source, "length", None)
        if n is None:
            raise DepthartError("--cache-latents needs a finite training set (e.g. --data rendered:FOLDER or "
                                "synthetic:N); an endless stream has nothing to cache")
        key = vae_hash(model)
        path = os.path.join(folder, f"latents-{key}.pt")
        if os.path.isfile(path):
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # a damaged file: compute it again
                d = None
                if log:
                    log(f"latent cache {path} unreadable ({e}); computing it again")
            if d is not None and d.get("vae") == key and d.get("n") == n and d.get("image_size") == image_size:
                if log:
                    log(f"latent cache: {path} ({n} samples)")
                return cls(d["image_latents"], d["f_D"])
        from ..data.torch_data import make_loader

        if log:
            log(f"latent cache: encoding {n} samples with the frozen VQ-VAE -> {path}")
        loader = make_loader(source, image_size, batch_size, shuffle=False, repeat=False, drop_last=False)
        dev = next(model.parameters()).device
        img_lat, f_D = [], []
        model.vae.eval()
        done = 0
        with torch.no_grad():
            for batch in _progress(loader, n, batch_size, log):
                img_lat.append(model.image_latents(batch["image"].to(dev)).float().cpu())
                f_D.append(model.vae.encode(batch["depth"].to(dev)).float().cpu())
                done += len(batch["image"])
        if done != n:
            raise DepthartError(f"latent cache: the loader gave {done} samples, the source has {n}")
        d = {"vae": key, "n": n, "image_size": image_size, "image_latents": torch.cat(img_lat), "f_D": torch.cat(f_D)}
        os.makedirs(folder, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(d, tmp)
        return cls(d["image_latents"], d["f_D"])


def _progress(loader, n, batch_size, log):
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(loader, total=(n + batch_size - 1) // batch_size, desc="latent cache", unit="batch",
                        disable=log is None)
        return
    yield from loader
