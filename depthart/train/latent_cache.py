"""The frozen VQ-VAE's outputs for a finite training set, computed once (`depthart train --cache-latents`).

The transformer methods keep the VQ-VAE frozen, so what it makes of a training sample never
changes: the image prefix's latents (L, cvae) and the depth latent f_D (cvae, h, w). With a
fixed (finite) training set they are computed once, stored beside the data, and looked up by
sample index each step, so a training step runs only the transformer.

The file `latents-<vae hash>-<data hash>.pt` (in the rendered scene folder, else the run folder)
holds {"vae": hash, "data": data id, "n": N, "image_size": S, "image_latents": (N, L, cvae) float32,
"f_D": (N, cvae, h, w) float32}. The hashes are of the VQ-VAE's weights and of the data's identity
(a rendered set's scenes.json, else the --data spec), so another VQ-VAE or other data never read a
stale cache. Under DDP the cache covers the whole source and each rank looks its samples up by
their global index. Batches must come without augmentation (the trainer's loader does not flip).
"""

from __future__ import annotations

import hashlib
import json
import os

import torch

from ..errors import DepthartError
from ..fileio import atomic_path


def vae_hash(model) -> str:
    """A short hash of the weights the cache depends on: the VQ-VAE's encoder side (the names, shapes and bytes of
    its state dict, less post_quant_conv and the decoder, which `train --trainable decoder` may train)."""
    h = hashlib.sha256()
    for name, t in sorted(model.vae.state_dict().items()):
        if name.startswith(("post_quant_conv.", "decoder.")):
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def data_id(source, spec: str) -> str:
    """What identifies a training source's samples: a rendered set's index file, else the --data spec."""
    info = getattr(source, "info", None)
    if getattr(source, "folder", None) and isinstance(info, dict):
        return json.dumps(info, sort_keys=True)
    return str(spec)


class LatentCache:
    """Per-sample VQ-VAE outputs of a finite source, indexed by the batch's "index".

    `rank`, `world`: under DDP a batch's "index" is rank-local (item i of rank r is global item
    i * world + r of the source the cache covers).
    """

    def __init__(self, image_latents: torch.Tensor, f_D: torch.Tensor, rank: int = 0, world: int = 1):
        self.image_latents, self.f_D = image_latents, f_D
        self.rank, self.world = rank, world

    def add_to(self, batch: dict) -> dict:
        idx = batch["index"].long().cpu() * self.world + self.rank
        out = dict(batch)
        out["image_latents"] = self.image_latents[idx].float()
        out["f_D"] = self.f_D[idx].float()
        return out

    @classmethod
    def build_or_load(cls, model, source, image_size: int, folder: str, batch_size: int = 64, log=None,
                      data: str = "", rank: int = 0, world: int = 1) -> "LatentCache":
        """Load the cache of this VQ-VAE and source from `folder`, or compute it and store it there.

        `data` identifies the source's samples (`data_id`); `rank`/`world` as in the class docstring.
        """
        n = getattr(source, "length", None)
        if n is None:
            raise DepthartError("--cache-latents needs a finite training set (e.g. --data rendered:FOLDER or "
                                "synthetic:N); an endless stream has nothing to cache")
        key = vae_hash(model)
        data_key = hashlib.sha256(data.encode()).hexdigest()[:8]
        path = os.path.join(folder, f"latents-{key}-{data_key}.pt")
        if os.path.isfile(path):
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # a damaged file: compute it again
                d = None
                if log:
                    log(f"latent cache {path} unreadable ({e}); computing it again")
            if (d is not None and d.get("vae") == key and d.get("data") == data and d.get("n") == n
                    and d.get("image_size") == image_size):
                if log:
                    log(f"latent cache: {path} ({n} samples)")
                return cls(d["image_latents"], d["f_D"], rank, world)
        from ..data.torch_data import make_loader

        if log:
            log(f"latent cache: encoding {n} samples with the frozen VQ-VAE -> {path}")
        loader = make_loader(source, image_size, batch_size, shuffle=False, repeat=False, drop_last=False)
        loader.generator = torch.Generator()  # leave the global RNG alone: a run is the same with or without the file
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
        d = {"vae": key, "data": data, "n": n, "image_size": image_size, "image_latents": torch.cat(img_lat),
             "f_D": torch.cat(f_D)}
        if rank == 0:  # under DDP every rank computes the same cache; one writes it
            os.makedirs(folder, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(d, tmp)
        return cls(d["image_latents"], d["f_D"], rank, world)


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
