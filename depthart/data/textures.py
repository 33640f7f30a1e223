"""Textures for the procedural scenes (numpy + Pillow, no torch).

A texture maps surface coordinates (u, v) in metres to an sRGB albedo in [0, 1]. Every lookup also
gets `w`, the pixel footprint on the surface in metres, and fades detail smaller than about a pixel
to its mean colour (procedural textures) or reads a coarser mip level (photos). Without that, far
floors alias into noise that looks like nothing in a real photograph.

Kinds: `plain` (flat colour with faint noise), `checker`, `stripes`, `noise` (fractal value noise),
`gradient` (a triangle-wave colour ramp), `tiles` (tiles, bricks and planks: a grid of cells with
grout and per-cell colour jitter, optionally offset every other row), and `photo`: a real photograph
shipped inside scikit-image's wheel (brick, grass, gravel, coffee, chelsea, astronaut, rocket,
camera), read from the installed package's `data` folder without importing scikit-image and
without any network access. Where scikit-image is not installed, `photo` is never chosen
(`photos_available()` says which case holds) and the generator uses procedural textures only.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
from PIL import Image

# name -> (file in skimage/data, natural tint for greyscale photos or None for colour photos)
PHOTOS = {
    "brick": ("brick.png", (0.80, 0.45, 0.35)),
    "grass": ("grass.png", (0.45, 0.65, 0.30)),
    "gravel": ("gravel.png", (0.70, 0.66, 0.60)),
    "camera": ("camera.png", (0.85, 0.85, 0.85)),
    "coffee": ("coffee.png", None),
    "chelsea": ("chelsea.png", None),
    "astronaut": ("astronaut.png", None),
    "rocket": ("rocket.jpg", None),
}
PHOTO_MAX_SIDE = 256  # photos are downsampled once to this many pixels on their longer side
_PHOTO_CACHE: dict[str, list[np.ndarray] | None] = {}


def skimage_data_dir() -> str | None:
    """scikit-image's bundled `data` folder, or None if scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return path if os.path.isdir(path) else None


def _load_pyramid(name: str) -> list[np.ndarray] | None:
    """The photo as a mip pyramid of float32 (h, w, 3) sRGB arrays in [0, 1], finest first."""
    if name not in _PHOTO_CACHE:
        folder = skimage_data_dir()
        path = os.path.join(folder, PHOTOS[name][0]) if folder else None
        if path is None or not os.path.isfile(path):
            _PHOTO_CACHE[name] = None
        else:
            with Image.open(path) as im:
                im = im.convert("RGB")
                scale = PHOTO_MAX_SIDE / max(im.size)
                if scale < 1:
                    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
                levels = [np.asarray(im, dtype=np.float32) / 255.0]
            while min(levels[-1].shape[:2]) >= 8:
                a = levels[-1]
                h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
                a = a[:h, :w]
                levels.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
            _PHOTO_CACHE[name] = levels
    return _PHOTO_CACHE[name]


def photos_available() -> list[str]:
    """Names of the photos that can be used here (empty without scikit-image)."""
    return [n for n in PHOTOS if _load_pyramid(n) is not None]


def _fade(w: np.ndarray, feature: float) -> np.ndarray:
    """Contrast kept for a pattern whose features are `feature` metres when a pixel covers `w`
    metres: 1 while features span >= 4 pixels, 0 once they are smaller than ~1.3 pixels."""
    return np.clip(1.5 - 1.15 * w / feature, 0.0, 1.0)


def _mix(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    return c0 + (c1 - c0) * t[:, None]


class Texture:
    """Base class: a random rotation and offset of (u, v), then `_eval(u, v, w) -> (N, 3)`."""

    kind = ""

    def __init__(self, rng: np.random.Generator):
        a = rng.uniform(0, 2 * np.pi)
        self.rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        self.offset = rng.uniform(-50, 50, size=2)
        self.name = self.kind

    def __call__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        uu = self.rot[0, 0] * u + self.rot[0, 1] * v + self.offset[0]
        vv = self.rot[1, 0] * u + self.rot[1, 1] * v + self.offset[1]
        return np.clip(self._eval(uu, vv, w), 0.0, 1.0).astype(np.float32)

    def _eval(self, u, v, w):
        raise NotImplementedError


class ValueNoise:
    """Fractal value noise on a periodic random lattice: `(x, y, w) -> values in ~[0, 1]`."""

    def __init__(self, rng: np.random.Generator, scale: float, octaves: int = 4, period: int = 64):
        self.lattice = rng.random((period, period)).astype(np.float64)
        self.period = period
        self.freq = 1.0 / scale  # lattice cells per metre at octave 0
        self.octaves = octaves
        self.shifts = rng.uniform(0, period, size=(octaves, 2))

    def _octave(self, x, y):
        p = self.period
        xf, yf = np.floor(x), np.floor(y)
        tx, ty = x - xf, y - yf
        tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)  # smoothstep
        x0 = xf.astype(np.int64) % p
        y0 = yf.astype(np.int64) % p
        x1, y1 = (x0 + 1) % p, (y0 + 1) % p
        g = self.lattice
        a = g[y0, x0] + (g[y0, x1] - g[y0, x0]) * tx
        b = g[y1, x0] + (g[y1, x1] - g[y1, x0]) * tx
        return a + (b - a) * ty

    def __call__(self, x, y, w):
        total = np.zeros_like(x)
        norm = 0.0
        f, amp = self.freq, 1.0
        for k in range(self.octaves):
            keep = amp * _fade(w, 1.0 / f)
            total += keep * (self._octave(x * f + self.shifts[k, 0], y * f + self.shifts[k, 1]) - 0.5)
            norm += amp
            f, amp = f * 2.0, amp * 0.5
        return 0.5 + total / norm * 1.6  # stretch: the sum of octaves is narrower than [0, 1]


class Plain(Texture):
    kind = "plain"

    def __init__(self, rng, color):
        super().__init__(rng)
        self.color = np.asarray(color)
        self.noise = ValueNoise(rng, scale=rng.uniform(0.3, 2.0), octaves=3)
        self.amount = rng.uniform(0.02, 0.12)

    def _eval(self, u, v, w):
        n = self.noise(u, v, w) - 0.5
        return self.color[None, :] * (1 + self.amount * 2 * n)[:, None]


class Checker(Texture):
    kind = "checker"

    def __init__(self, rng, c0, c1):
        super().__init__(rng)
        self.c0, self.c1 = np.asarray(c0), np.asarray(c1)
        self.square = rng.uniform(0.1, 1.0)

    def _eval(self, u, v, w):
        s = (np.floor(u / self.square) + np.floor(v / self.square)) % 2
        t = 0.5 + (s - 0.5) * _fade(w, self.square)
        return _mix(self.c0, self.c1, t)


class Stripes(Texture):
    kind = "stripes"

    def __init__(self, rng, c0, c1):
        super().__init__(rng)
        self.c0, self.c1 = np.asarray(c0), np.asarray(c1)
        self.period = rng.uniform(0.05, 0.8)
        self.duty = rng.uniform(0.2, 0.8)

    def _eval(self, u, v, w):
        s = ((u / self.period) % 1.0 < self.duty).astype(np.float64)
        feature = self.period * min(self.duty, 1 - self.duty)
        t = self.duty + (s - self.duty) * _fade(w, feature)  # fades to the mean, duty * c1 + ...
        return _mix(self.c0, self.c1, 1.0 - t)


class Noise(Texture):
    kind = "noise"

    def __init__(self, rng, c0, c1):
        super().__init__(rng)
        self.c0, self.c1 = np.asarray(c0), np.asarray(c1)
        self.noise = ValueNoise(rng, scale=rng.uniform(0.05, 1.5), octaves=int(rng.integers(2, 6)))

    def _eval(self, u, v, w):
        return _mix(self.c0, self.c1, np.clip(self.noise(u, v, w), 0, 1))


class Gradient(Texture):
    kind = "gradient"

    def __init__(self, rng, c0, c1):
        super().__init__(rng)
        self.c0, self.c1 = np.asarray(c0), np.asarray(c1)
        self.period = rng.uniform(0.5, 6.0)

    def _eval(self, u, v, w):
        x = (u / self.period) % 2.0
        return _mix(self.c0, self.c1, np.where(x < 1, x, 2 - x))


class Tiles(Texture):
    """Tiles, bricks (every other row offset by half a cell) or planks (long thin cells, random
    row offsets): a grid of cells with grout lines and per-cell colour jitter."""

    kind = "tiles"

    def __init__(self, rng, color, grout, style: str):
        super().__init__(rng)
        self.color, self.grout = np.asarray(color), np.asarray(grout)
        self.style = style
        self.name = f"tiles-{style}"
        if style == "bricks":
            self.cell = np.array([rng.uniform(0.18, 0.3), rng.uniform(0.06, 0.1)])
        elif style == "planks":
            self.cell = np.array([rng.uniform(0.8, 2.0), rng.uniform(0.1, 0.25)])
        else:
            self.cell = np.full(2, rng.uniform(0.15, 0.6))
        self.gap = rng.uniform(0.03, 0.08) * self.cell.min()
        self.jitter = rng.normal(0.0, rng.uniform(0.03, 0.15), size=(256, 3))
        self.row_shift = rng.random(256)

    def _eval(self, u, v, w):
        cw, ch = self.cell
        row = np.floor(v / ch)
        ri = row.astype(np.int64) % 256
        if self.style == "bricks":
            u = u + 0.5 * cw * (ri % 2)
        elif self.style == "planks":
            u = u + cw * self.row_shift[ri]
        col = np.floor(u / cw)
        fu, fv = u - col * cw, v - row * ch
        edge = np.minimum(np.minimum(fu, cw - fu), np.minimum(fv, ch - fv))
        cell = (col.astype(np.int64) * 73856093 ^ ri * 19349663) % 256
        base = self.color[None, :] * (1 + self.jitter[cell] * _fade(w, self.cell.min())[:, None])
        g = (edge < self.gap).astype(np.float64) * _fade(w, 2 * self.gap)
        grout_share = 2 * self.gap / self.cell.min()  # fraction of area that is grout, for the far fade
        g = g + (1 - _fade(w, 2 * self.gap)) * grout_share
        return _mix(base, np.broadcast_to(self.grout, base.shape), g)


class Photo(Texture):
    kind = "photo"

    def __init__(self, rng, photo: str, tint=None):
        super().__init__(rng)
        self.name = f"photo-{photo}"
        self.levels = _load_pyramid(photo)
        assert self.levels is not None, f"photo {photo} is not available"
        h, w = self.levels[0].shape[:2]
        self.size_m = rng.uniform(0.4, 4.0)  # the photo's width in metres on the surface
        self.texels_per_m = w / self.size_m
        natural = PHOTOS[photo][1]
        if natural is not None:  # greyscale photo: tint it, near its natural colour
            base = np.asarray(natural) if tint is None else np.asarray(tint)
            self.tint = np.clip(base * rng.uniform(0.8, 1.2, size=3), 0, 1.2) * 1.25
        else:
            self.tint = np.ones(3)

    def _eval(self, u, v, w):
        level = np.clip(np.log2(np.maximum(w * self.texels_per_m, 1.0)), 0, len(self.levels) - 1)
        level = np.rint(level).astype(np.int64)
        out = np.empty((u.shape[0], 3), dtype=np.float64)
        for k in np.unique(level):
            sel = level == k
            img = self.levels[k]
            h, wd = img.shape[:2]
            x = u[sel] * self.texels_per_m / 2**k - 0.5
            y = -v[sel] * self.texels_per_m / 2**k - 0.5  # v up on the surface, rows go down
            x0f, y0f = np.floor(x), np.floor(y)
            tx, ty = (x - x0f)[:, None], (y - y0f)[:, None]
            x0, y0 = x0f.astype(np.int64) % wd, y0f.astype(np.int64) % h
            x1, y1 = (x0 + 1) % wd, (y0 + 1) % h
            a = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * tx
            b = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * tx
            out[sel] = a + (b - a) * ty
        return out * self.tint[None, :]


# ------------------------------------------------------------------ random choice by role

def random_color(rng, sat=(0.1, 0.7), val=(0.3, 0.9), hue=None) -> np.ndarray:
    """An sRGB colour from HSV ranges (hue in [0, 1), or a (lo, hi) range)."""
    h = rng.uniform(*hue) % 1.0 if hue is not None else rng.random()
    s, v = rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


# per role: (kind, weight). Photos are dropped (and the rest renormalised) without scikit-image.
_ROLE_WEIGHTS = {
    "floor": [("tiles-planks", 3), ("tiles-tiles", 2), ("checker", 1), ("noise", 2), ("plain", 1), ("photo", 2)],
    "wall": [("plain", 3), ("stripes", 2), ("tiles-bricks", 1), ("noise", 1), ("gradient", 1), ("photo", 2)],
    "ceiling": [("plain", 4), ("noise", 1), ("tiles-tiles", 1)],
    "ground": [("photo", 4), ("noise", 3), ("tiles-tiles", 1), ("checker", 1), ("plain", 1)],
    "object": [("plain", 2), ("checker", 2), ("stripes", 2), ("noise", 2), ("gradient", 1), ("tiles-bricks", 1),
               ("tiles-tiles", 1), ("photo", 4)],
    "building": [("tiles-bricks", 2), ("plain", 2), ("stripes", 1), ("noise", 1), ("photo", 1)],
}
_ROLE_PHOTOS = {
    "floor": ["gravel", "brick", "grass", "coffee"],
    "wall": ["brick", "coffee", "chelsea", "astronaut", "rocket", "camera"],
    "ground": ["grass", "grass", "gravel"],
    "object": list(PHOTOS),
    "building": ["brick"],
}


def random_texture(rng: np.random.Generator, role: str, photos: list[str]) -> Texture:
    """A texture suited to `role` (floor, wall, ceiling, ground, object, building).

    `photos` lists the usable photos (`photos_available()`); pass an empty list for procedural only.
    """
    choices = [(k, wt) for k, wt in _ROLE_WEIGHTS[role]
               if k != "photo" or any(p in photos for p in _ROLE_PHOTOS.get(role, []))]
    kinds, weights = zip(*choices)
    p = np.asarray(weights, dtype=np.float64)
    kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
    bright = (0.6, 0.95) if role == "ceiling" else (0.25, 0.9)
    c0 = random_color(rng, val=bright)
    if role == "ground":
        c0 = random_color(rng, sat=(0.2, 0.6), val=(0.25, 0.6), hue=(0.05, 0.35))
    c1 = np.clip(c0 * rng.uniform(0.3, 0.8) if rng.random() < 0.5 else random_color(rng, val=bright), 0, 1)
    if kind == "plain":
        return Plain(rng, c0)
    if kind == "checker":
        return Checker(rng, c0, c1)
    if kind == "stripes":
        return Stripes(rng, c0, c1)
    if kind == "noise":
        return Noise(rng, c0, c1)
    if kind == "gradient":
        return Gradient(rng, c0, c1)
    if kind.startswith("tiles-"):
        grout = random_color(rng, sat=(0.0, 0.2), val=(0.2, 0.9))
        if kind == "tiles-bricks" and rng.random() < 0.6:
            c0 = random_color(rng, sat=(0.4, 0.7), val=(0.35, 0.7), hue=(0.0, 0.08))
        if kind == "tiles-planks":
            c0 = random_color(rng, sat=(0.3, 0.7), val=(0.3, 0.8), hue=(0.04, 0.12))
        return Tiles(rng, c0, grout, kind.split("-")[1])
    usable = [p for p in _ROLE_PHOTOS.get(role, []) if p in photos]
    return Photo(rng, usable[rng.integers(len(usable))])
