"""Procedural scenes with exact depth: a vectorised numpy ray caster (no torch).

`generate_scene(seed)` builds a random scene and renders it from a random camera:

* **indoor**: a closed box room (floor, four walls, ceiling; 3-10 m wide, 2.4-3.6 m high) with
  boxes, spheres and cylinders on the floor or stacked on boxes, lit by a point light under the
  ceiling plus ambient light. Every pixel sees a surface, so every pixel is valid.
* **outdoor**: an infinite ground plane, sky, objects near the camera, trees (trunk + crown),
  buildings and hills (spheres sunk into the ground) further away, lit by a sun plus sky light,
  with height-independent haze that reaches the sky colour at the far cap.

Conventions (see also `depthart.data.geometry`):

* Depth is **planar**: z along the optical axis, in metres, float32. It is exact: a pixel's ray is
  d = forward + x*right - y*up with x = (j + 0.5 - cx)/fx, y = (i + 0.5 - cy)/fy; since d has a
  unit component along the optical axis, the ray parameter t of the nearest hit *is* the planar
  depth, computed in closed form (ray-plane, ray-sphere, ray-box slabs, ray-cylinder).
* **Sky**: pixels whose ray hits nothing, or whose hit is farther than the scene's far cap
  `meta["sky_depth"]` (60-200 m, planar), are sky. They are marked invalid (`valid` False) and
  their depth is set to that cap, so the array is finite everywhere but only valid pixels are
  ground truth. The haze makes surfaces fade to the sky colour as they approach the cap, so the
  cut is invisible in the RGB.
* Intrinsics: square pixels, fx = fy = (W/2)/tan(fov_x/2), principal point at the image centre;
  horizontal fov 45-90 degrees. `meta["K"]` is the 3x3 matrix.
* RGB: Lambertian shading (albedo x (ambient + direct x cos), shadows from objects) in linear
  light, then Hypersim's tone mapper (90th percentile of the valid pixels' brightness to 0.8 after
  gamma 1/2.2) with a small random exposure jitter, then uint8. Pixels on object silhouettes
  get 4 extra rays, averaged (RGB only; depth stays that of the pixel-centre ray).
* Deterministic: everything is drawn from `numpy.random.default_rng(seed)`; the same seed, size
  and scikit-image availability give byte-identical arrays (photo textures come from
  scikit-image's data folder when it is installed, `meta["photos"]` records which case held).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .base import DepthDataset
from .geometry import as_hw, intrinsics_from_fov, planar_to_distance
from .textures import Noise, Texture, ValueNoise, photos_available, random_color, random_texture

KINDS = ("indoor", "outdoor")
FOV_RANGE_DEG = (45.0, 90.0)
HELD_OUT_SEED_OFFSET = 1_000_000_000  # test scenes use seeds from here on; training must stay below
_EPS = 1e-4


@dataclass
class Sample:
    """One rendered scene.

    Attributes:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 planar depth in metres (the far cap where not valid).
        valid: (H, W) bool, True where the ray hits a surface nearer than the far cap.
        entity: (H, W) int32 id of the surface each pixel sees (1..n), -1 for sky (Hypersim's
            render_entity_id convention).
        meta: JSON-serialisable facts: kind, seed, size, fov_x (radians), K, camera pose,
            sky_depth (outdoor far cap, None indoors), textures, photos, n_objects.
    """

    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    entity: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def K(self) -> np.ndarray:
        return np.asarray(self.meta["K"], dtype=np.float64)

    def as_dict(self) -> dict:
        """The dataset-interface form (`depthart.data.base`): rgb, depth, valid, meta."""
        return {"rgb": self.rgb, "depth": self.depth, "valid": self.valid, "meta": self.meta}


# ------------------------------------------------------------------ primitives
# Each primitive answers two questions for a batch of rays:
#   hit(o, d) -> t (N,), inf where missed; o is (3,) or (N, 3), d is (N, 3) (not normalised)
#   surface(p) -> (normal (N, 3) unit, u (N,), v (N,), part (N,) int): the outward normal, surface
#   coordinates in metres for the texture, and which of the primitive's textures applies.

def _dot(a, b):
    """Row-wise dot product of (N, 3) and/or (3,) arrays (faster than (a * b).sum(-1))."""
    if a.ndim == 1 or b.ndim == 1:
        return a @ b if a.ndim > 1 or b.ndim == 1 else b @ a
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _max3(x):
    return np.maximum(np.maximum(x[:, 0], x[:, 1]), x[:, 2])


def _min3(x):
    return np.minimum(np.minimum(x[:, 0], x[:, 1]), x[:, 2])


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Primitive:
    casts_shadow = True

    def __init__(self, textures: list[Texture]):
        self.textures = textures

    def hit(self, o, d):
        raise NotImplementedError

    def surface(self, p):
        raise NotImplementedError

    def bound(self) -> tuple[np.ndarray, float]:
        """(centre, radius) of a bounding sphere, for placement checks."""
        raise NotImplementedError


class Sphere(Primitive):
    def __init__(self, center, radius, textures):
        super().__init__(textures)
        self.c, self.r = np.asarray(center, dtype=np.float64), float(radius)

    def hit(self, o, d):
        oc = o - self.c
        a = _dot(d, d)
        b = _dot(oc, d)  # half of the usual b
        c = _dot(oc, oc) - self.r * self.r
        disc = b * b - a * c
        ok = disc >= 0
        sq = np.sqrt(np.where(ok, disc, 0.0))
        t0, t1 = (-b - sq) / a, (-b + sq) / a
        t = np.where(t0 > _EPS, t0, np.where(t1 > _EPS, t1, np.inf))
        return np.where(ok, t, np.inf)

    def surface(self, p):
        q = p - self.c
        n = q / self.r
        u = np.arctan2(q[:, 1], q[:, 0]) * self.r
        v = np.arcsin(np.clip(n[:, 2], -1, 1)) * self.r
        return n, u, v, np.zeros(len(p), dtype=np.int64)

    def bound(self):
        return self.c, self.r


class Box(Primitive):
    """An oriented box: centre, half extents, rotation R (columns = the box's axes in world).

    With `inside=True` it is a room seen from within: the hit is where the ray leaves the box,
    normals point inwards, and the six faces have their own textures in the order
    (x-, x+, y-, y+, z- = floor, z+ = ceiling).
    """

    def __init__(self, center, half, R, textures, inside=False):
        super().__init__(textures)
        self.c, self.h, self.R = (np.asarray(a, dtype=np.float64) for a in (center, half, R))
        self.inside = inside
        self.casts_shadow = not inside

    def hit(self, o, d):
        ol = (o - self.c) @ self.R
        dl = d @ self.R
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        t1, t2 = (-self.h - ol) / dl, (self.h - ol) / dl
        tn = _max3(np.minimum(t1, t2))
        tf = _min3(np.maximum(t1, t2))
        if self.inside:
            return np.where(tf > _EPS, tf, np.inf)
        return np.where((tn <= tf) & (tn > _EPS), tn, np.where((tn <= tf) & (tf > _EPS) & (tn <= _EPS), tf, np.inf))

    def surface(self, p):
        pl = (p - self.c) @ self.R
        axis = np.abs(pl / self.h).argmax(-1)
        rows = np.arange(len(p))
        sign = np.sign(pl[rows, axis])
        sign[sign == 0] = 1
        n = self.R.T[axis] * sign[:, None]
        if self.inside:
            n = -n
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        u, v = pl[rows, other[:, 0]], pl[rows, other[:, 1]]
        part = axis * 2 + (sign > 0) if len(self.textures) == 6 else np.zeros(len(p), dtype=np.int64)
        return n, u, v, part

    def bound(self):
        return self.c, float(np.linalg.norm(self.h))


class Cylinder(Primitive):
    """A capped cylinder along the local z axis of rotation R, radius r, half height hh."""

    def __init__(self, center, radius, half_height, R, textures):
        super().__init__(textures)
        self.c, self.R = np.asarray(center, dtype=np.float64), np.asarray(R, dtype=np.float64)
        self.r, self.hh = float(radius), float(half_height)

    def hit(self, o, d):
        ol = (o - self.c) @ self.R
        dl = d @ self.R
        ox, oy, oz = ol[..., 0], ol[..., 1], ol[..., 2]
        dx, dy, dz = dl[:, 0], dl[:, 1], dl[:, 2]
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - self.r * self.r
        disc = b * b - a * c
        ok = (disc >= 0) & (a > 1e-12)
        sq = np.sqrt(np.where(ok, disc, 0.0))
        a_safe = np.where(a > 1e-12, a, 1.0)
        best = np.full(len(d), np.inf)
        for t in ((-b - sq) / a_safe, (-b + sq) / a_safe):  # side
            good = ok & (t > _EPS) & (np.abs(oz + t * dz) <= self.hh)
            best = np.where(good & (t < best), t, best)
        dz_safe = np.where(np.abs(dz) > 1e-12, dz, 1e-12)
        for zc in (-self.hh, self.hh):  # caps
            t = (zc - oz) / dz_safe
            x, y = ox + t * dx, oy + t * dy
            good = (t > _EPS) & (x * x + y * y <= self.r * self.r)
            best = np.where(good & (t < best), t, best)
        return best

    def surface(self, p):
        pl = (p - self.c) @ self.R
        rxy = np.hypot(pl[:, 0], pl[:, 1])
        cap = np.abs(pl[:, 2]) / self.hh > rxy / self.r
        nl = np.where(cap[:, None], np.stack([0 * rxy, 0 * rxy, np.sign(pl[:, 2])], -1),
                      np.stack([pl[:, 0], pl[:, 1], 0 * rxy], -1) / np.maximum(rxy, 1e-12)[:, None])
        n = nl @ self.R.T
        u = np.where(cap, pl[:, 0], np.arctan2(pl[:, 1], pl[:, 0]) * self.r)
        v = np.where(cap, pl[:, 1], pl[:, 2])
        return n, u, v, np.zeros(len(p), dtype=np.int64)

    def bound(self):
        return self.c, float(np.hypot(self.r, self.hh))


class Ground(Primitive):
    """The plane z = 0, seen from above."""

    casts_shadow = False

    def hit(self, o, d):
        oz = o[..., 2]
        dz = d[:, 2]
        t = -oz / np.where(dz < -1e-12, dz, -1e-12)
        return np.where((dz < -1e-12) & (t > _EPS), t, np.inf)

    def surface(self, p):
        n = np.zeros_like(p)
        n[:, 2] = 1
        return n, p[:, 0], p[:, 1], np.zeros(len(p), dtype=np.int64)


# ------------------------------------------------------------------ camera

@dataclass
class Camera:
    position: np.ndarray
    yaw: float    # radians, 0 = looking along +x, counter-clockwise seen from above
    pitch: float  # radians, positive = looking up
    roll: float   # radians
    K: np.ndarray
    size: tuple[int, int]

    def basis(self):
        cy, sy, cp, sp = np.cos(self.yaw), np.sin(self.yaw), np.cos(self.pitch), np.sin(self.pitch)
        f = np.array([cp * cy, cp * sy, sp])
        r0 = np.array([sy, -cy, 0.0])
        u0 = np.cross(r0, f)
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        return f, cr * r0 + sr * u0, -sr * r0 + cr * u0

    def rays(self, rows=None, cols=None) -> np.ndarray:
        """Ray directions (N, 3) with a unit component along the optical axis, for pixel-centre
        coordinates rows/cols (continuous, default: every pixel centre in row-major order)."""
        if rows is None:
            h, w = self.size
            rows, cols = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
            rows, cols = rows.ravel(), cols.ravel()
        f, r, u = self.basis()
        x = (cols - self.K[0, 2]) / self.K[0, 0]
        y = (rows - self.K[1, 2]) / self.K[1, 1]
        return f[None, :] + x[:, None] * r[None, :] - y[:, None] * u[None, :]


# ------------------------------------------------------------------ scene

@dataclass
class Scene:
    kind: str
    prims: list
    camera: Camera
    light_pos: np.ndarray | None  # point light (indoor) ...
    sun_dir: np.ndarray | None    # ... or directional light towards the sun (outdoor), unit
    light_color: np.ndarray
    ambient: np.ndarray
    sky_depth: float | None = None
    sky: dict | None = None
    exposure: float = 1.0


def _place_ok(center, radius, placed, camera_pos, shrink=0.8) -> bool:
    """Is an object with bounding sphere (center, radius) at least 0.35 m from the camera, and
    apart from the objects placed so far (footprints of shrink * radius, so some may touch)?"""
    if np.linalg.norm(center - camera_pos) < radius + 0.35:
        return False
    for c, r in placed:
        if np.linalg.norm((center - c)[:2]) < shrink * radius + r + 0.05:
            return False
    return True


def _random_object(rng, pos_xy, scale, photos):
    """A sphere, box or cylinder resting on the ground at pos_xy; `scale` multiplies sizes."""
    tex = [random_texture(rng, "object", photos)]
    kind = rng.choice(["sphere", "box", "box", "cylinder", "cylinder-lying"])
    if kind == "sphere":
        r = rng.uniform(0.1, 0.55) * scale
        float_h = rng.uniform(0.2, 1.2) * scale if rng.random() < 0.1 else 0.0
        return Sphere([pos_xy[0], pos_xy[1], r + float_h], r, tex)
    if kind == "box":
        half = rng.uniform([0.1, 0.1, 0.08], [0.7, 0.7, 0.9]) * scale
        R = _rot_z(rng.uniform(0, np.pi))
        return Box([pos_xy[0], pos_xy[1], half[2]], half, R, tex)
    r = rng.uniform(0.06, 0.45) * scale
    hh = rng.uniform(0.1, 0.9) * scale
    if kind == "cylinder":
        return Cylinder([pos_xy[0], pos_xy[1], hh], r, hh, _rot_z(rng.uniform(0, np.pi)), tex)
    lying = _rot_z(rng.uniform(0, np.pi)) @ np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # axis horizontal
    return Cylinder([pos_xy[0], pos_xy[1], r], r, hh, lying, tex)


def _stack_on(rng, box: Box, photos, scale):
    """A small object resting on top of `box` (its top face is horizontal: boxes only turn about z)."""
    top = box.c[2] + box.h[2]
    lim = np.maximum(box.h[:2] * 0.6, 1e-3)
    local = rng.uniform(-lim, lim)
    xy = box.c[:2] + box.R[:2, :2] @ local
    size = min(box.h[0], box.h[1]) * scale
    tex = [random_texture(rng, "object", photos)]
    k = rng.integers(3)
    if k == 0:
        r = rng.uniform(0.3, 0.9) * size
        return Sphere([xy[0], xy[1], top + r], r, tex)
    if k == 1:
        half = rng.uniform(0.3, 0.9, size=3) * size
        return Box([xy[0], xy[1], top + half[2]], half, _rot_z(rng.uniform(0, np.pi)), tex)
    r, hh = rng.uniform(0.2, 0.6) * size, rng.uniform(0.3, 1.5) * size
    return Cylinder([xy[0], xy[1], top + hh], r, hh, _rot_z(0.0), tex)


def _camera(rng, size, position, yaw, pitch_deg, fov):
    fov_draw = np.deg2rad(rng.uniform(*FOV_RANGE_DEG))
    fov = fov_draw if fov is None else float(fov)
    pitch = np.deg2rad(rng.uniform(*pitch_deg))
    roll = np.deg2rad(rng.uniform(-4, 4))
    return Camera(np.asarray(position, dtype=np.float64), float(yaw), float(pitch), float(roll),
                  intrinsics_from_fov(fov, size), as_hw(size))


def _indoor(rng, size, fov, photos) -> Scene:
    hx, hy = rng.uniform(1.5, 5.0, size=2)
    hz = rng.uniform(1.2, 1.8)
    room_c = np.array([0.0, 0.0, hz])
    wall = random_texture(rng, "wall", photos)
    walls = [wall] * 4 if rng.random() < 0.6 else [random_texture(rng, "wall", photos) for _ in range(4)]
    room = Box(room_c, [hx, hy, hz], np.eye(3),
               walls + [random_texture(rng, "floor", photos), random_texture(rng, "ceiling", photos)], inside=True)

    cam_xy = rng.uniform([-hx + 0.4, -hy + 0.4], [hx - 0.4, hy - 0.4])
    cam_z = rng.uniform(0.8, min(2.0, 2 * hz - 0.4))
    to_centre = np.arctan2(-cam_xy[1], -cam_xy[0]) if np.linalg.norm(cam_xy) > 0.5 else rng.uniform(-np.pi, np.pi)
    cam = _camera(rng, size, [cam_xy[0], cam_xy[1], cam_z], to_centre + rng.uniform(-1.0, 1.0), (-35, 12), fov)

    prims, placed = [room], []
    n_obj = int(rng.integers(2, 9))
    boxes = []
    for _ in range(n_obj):
        for _try in range(20):
            if rng.random() < 0.75:  # in front of the camera, so most objects are seen
                ang = cam.yaw + rng.uniform(-0.7, 0.7)
                dist = rng.uniform(0.8, 6.0)
                xy = cam_xy + dist * np.array([np.cos(ang), np.sin(ang)])
            else:
                xy = rng.uniform([-hx, -hy], [hx, hy])
            obj = _random_object(rng, xy, 1.0, photos)
            c, r = obj.bound()
            inside = np.all(np.abs(xy) + min(r, 0.9) < [hx, hy]) and c[2] + r < 2 * hz
            if inside and _place_ok(c, r, placed, cam.position):
                prims.append(obj)
                placed.append((c, r * 0.8))
                if isinstance(obj, Box):
                    boxes.append(obj)
                break
    for box in boxes:  # things on boxes
        if rng.random() < 0.4:
            obj = _stack_on(rng, box, photos, 1.0)
            c, r = obj.bound()
            if np.linalg.norm(c - cam.position) > r + 0.35 and c[2] + r < 2 * hz:
                prims.append(obj)

    light = np.array([rng.uniform(-hx + 0.3, hx - 0.3), rng.uniform(-hy + 0.3, hy - 0.3),
                      2 * hz - rng.uniform(0.5, 0.9)])
    warm = rng.uniform(0.0, 0.25)
    light_color = np.array([1.0, 1.0 - 0.4 * warm, 1.0 - warm]) * rng.uniform(8, 20)
    ambient = np.full(3, rng.uniform(0.15, 0.5))
    return Scene("indoor", prims, cam, light, None, light_color, ambient, exposure=rng.uniform(0.8, 1.15))


def _outdoor(rng, size, fov, photos) -> Scene:
    far = float(rng.uniform(60, 200))
    ground = Ground([random_texture(rng, "ground", photos)])
    cam_z = rng.uniform(1.0, 3.0) if rng.random() < 0.8 else rng.uniform(3.0, 12.0)
    cam = _camera(rng, size, [0.0, 0.0, cam_z], rng.uniform(-np.pi, np.pi), (-30, 8), fov)
    prims, placed = [ground], []

    def spot(dmin, dmax, spread=0.8):
        ang = cam.yaw + rng.uniform(-spread, spread)
        return rng.uniform(dmin, dmax) * np.array([np.cos(ang), np.sin(ang)])

    for _ in range(int(rng.integers(3, 12))):  # objects near the camera
        for _try in range(10):
            obj = _random_object(rng, spot(1.5, 30.0), rng.uniform(1.0, 3.0), photos)
            c, r = obj.bound()
            if _place_ok(c, r, placed, cam.position):
                prims.append(obj)
                placed.append((c, r * 0.8))
                break
    crown_tex = Noise(rng, random_color(rng, (0.4, 0.8), (0.25, 0.6), (0.2, 0.4)),
                      random_color(rng, (0.4, 0.8), (0.1, 0.35), (0.2, 0.4)))
    trunk_tex = Noise(rng, random_color(rng, (0.3, 0.6), (0.2, 0.45), (0.03, 0.1)),
                      random_color(rng, (0.3, 0.6), (0.1, 0.25), (0.03, 0.1)))
    for _ in range(int(rng.integers(0, 9))):  # trees: a trunk and a round crown
        xy = spot(4.0, 0.6 * far, 1.0)
        trunk_r, trunk_h = rng.uniform(0.1, 0.35), rng.uniform(1.5, 5.0)
        crown_r = rng.uniform(1.0, 3.0)
        if not _place_ok(np.array([xy[0], xy[1], trunk_h]), crown_r, placed, cam.position, shrink=1.0):
            continue
        prims.append(Cylinder([xy[0], xy[1], trunk_h / 2], trunk_r, trunk_h / 2, np.eye(3), [trunk_tex]))
        prims.append(Sphere([xy[0], xy[1], trunk_h + 0.7 * crown_r], crown_r, [crown_tex]))
        placed.append((np.array([xy[0], xy[1], trunk_h]), crown_r))
    for _ in range(int(rng.integers(0, 7))):  # buildings
        xy = spot(15.0, 0.8 * far, 1.0)
        half = np.array([rng.uniform(3, 15), rng.uniform(3, 15), rng.uniform(2.5, 20)])
        b = Box([xy[0], xy[1], half[2]], half, _rot_z(rng.uniform(0, np.pi)), [random_texture(rng, "building", photos)])
        c, r = b.bound()
        if _place_ok(c, r, placed, cam.position, shrink=0.7):
            prims.append(b)
            placed.append((c, r * 0.7))
    hill_tex = random_texture(rng, "ground", photos)
    for _ in range(int(rng.integers(0, 4))):  # hills: big spheres sunk into the ground
        r = rng.uniform(20, 120)
        cz = -r * rng.uniform(0.6, 0.95)
        foot = np.sqrt(r * r - cz * cz)
        xy = spot(foot + 5.0, foot + far, 1.2)
        hill = Sphere([xy[0], xy[1], cz], r, [hill_tex])
        hill.casts_shadow = False
        if np.linalg.norm(hill.c - cam.position) > r + 1.0:
            prims.append(hill)

    elev = np.deg2rad(rng.uniform(15, 75))
    az = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
    overcast = rng.random() < 0.25
    warm = rng.uniform(0.0, 0.3)
    light_color = np.array([1.0, 1.0 - 0.3 * warm, 1.0 - 0.6 * warm]) * (0.5 if overcast else 1.0)
    zenith = random_color(rng, sat=(0.3, 0.7), val=(0.55, 0.9), hue=(0.55, 0.65))
    horizon = np.clip(zenith + rng.uniform(0.2, 0.45), 0, 1)
    if overcast:
        zenith = horizon = np.full(3, rng.uniform(0.6, 0.9))
    sky = {"zenith": (zenith ** 2.2) * 0.45, "horizon": (horizon ** 2.2) * 0.45,
           "clouds": ValueNoise(rng, scale=rng.uniform(200, 800), octaves=4), "cloud_amount": rng.uniform(0, 0.8)}
    ambient = (zenith ** 2.2) * rng.uniform(0.4, 0.7) + (0.3 if overcast else 0.0)
    return Scene("outdoor", prims, cam, None, sun, light_color, ambient, sky_depth=far, sky=sky,
                 exposure=rng.uniform(0.8, 1.15))


def build_scene(seed, size=128, kind: str | None = None, fov: float | None = None) -> Scene:
    """The random scene for `seed` (no rendering). `kind` forces indoor/outdoor, `fov` (radians)
    forces the horizontal field of view; neither changes the other random draws."""
    rng = np.random.default_rng(seed)
    drawn = KINDS[int(rng.integers(2))]
    kind = drawn if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    photos = photos_available()
    return (_indoor if kind == "indoor" else _outdoor)(rng, size, fov, photos)


# ------------------------------------------------------------------ rendering

def _hit_culled(prim: Primitive, o, d, dd) -> np.ndarray:
    """prim.hit(o, d), run only on the rays that meet the primitive's bounding sphere (dd = |d|^2).
    The exact test is elementwise and the rays skipped miss the primitive, so no value changes."""
    try:
        c, r = prim.bound()
    except NotImplementedError:
        return prim.hit(o, d)
    oc = o - c
    b = _dot(oc, d)
    cc = _dot(oc, oc) - r * r
    near = (b * b - dd * cc >= 0) & ((b <= 0) | (cc <= 0))  # the line meets the sphere ahead of o
    out = np.full(len(d), np.inf)
    k = np.flatnonzero(near)
    if len(k):
        out[k] = prim.hit(o if o.ndim == 1 else o[k], d[k])
    return out


def _trace(scene: Scene, o, d):
    """Nearest hit for each ray: (t (N,), index into scene.prims or -1)."""
    dd = _dot(d, d)
    ts = np.stack([_hit_culled(p, o, d, dd) for p in scene.prims])
    idx = ts.argmin(0)
    t = ts[idx, np.arange(d.shape[0])]
    return t, np.where(np.isfinite(t), idx, -1)


def _occluded(scene: Scene, p, to_light, max_t) -> np.ndarray:
    """(N,) bool: does an object sit between p and the light (within max_t along to_light)?"""
    out = np.zeros(len(p), dtype=bool)
    dd = _dot(to_light, to_light)
    for prim in scene.prims:
        if prim.casts_shadow:
            out |= _hit_culled(prim, p, to_light, dd) < max_t
    return out


def _sky_radiance(scene: Scene, d) -> np.ndarray:
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    e = np.clip(dn[:, 2], 0, 1)[:, None]
    s = scene.sky
    col = s["horizon"] + (s["zenith"] - s["horizon"]) * np.sqrt(e)
    if s["cloud_amount"] > 0:  # clouds on a plane 1 km up
        k = 1000.0 / np.maximum(dn[:, 2], 0.02)
        c = s["clouds"](dn[:, 0] * k, dn[:, 1] * k, np.zeros(len(d)))
        c = np.clip((c - (1 - s["cloud_amount"])) * 3, 0, 1)[:, None] * np.clip(e * 8, 0, 1)
        col = col + (np.full(3, col.max()) * 1.1 - col) * c
    if scene.sun_dir is not None:  # a soft glow around the sun
        col = col + 0.4 * scene.light_color * np.clip(dn @ scene.sun_dir, 0, 1)[:, None] ** 64
    return col


def _shade(scene: Scene, d: np.ndarray, t: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Linear radiance (N, 3) of rays d whose nearest hits are (t, idx)."""
    cam = scene.camera
    n_rays = len(d)
    radiance = np.zeros((n_rays, 3))
    hit = idx >= 0
    if scene.sky_depth is not None:
        hit &= t <= scene.sky_depth
    normal = np.zeros((n_rays, 3))
    albedo = np.zeros((n_rays, 3))
    f = cam.K[0, 0]
    dnorm = np.linalg.norm(d, axis=1)
    for k in np.unique(idx[hit]):
        sel = np.flatnonzero(hit & (idx == k))
        prim = scene.prims[k]
        p = cam.position + t[sel, None] * d[sel]
        n, u, v, part = prim.surface(p)
        facing = _dot(n, d[sel])
        n = np.where((facing > 0)[:, None], -n, n)
        cos_view = np.abs(facing) / dnorm[sel]
        w = t[sel] * dnorm[sel] / f / np.sqrt(np.maximum(cos_view, 0.03))  # pixel footprint (m)
        a = np.empty((len(sel), 3))
        for j in np.unique(part):
            m = part == j
            a[m] = prim.textures[j](u[m], v[m], w[m])
        normal[sel], albedo[sel] = n, a ** 2.2  # textures are sRGB; shade in linear light
    sel = np.flatnonzero(hit)
    p = cam.position + t[sel, None] * d[sel]
    n = normal[sel]
    if scene.light_pos is not None:
        to_l = scene.light_pos - p
        dist = np.linalg.norm(to_l, axis=1)
        ldir = to_l / dist[:, None]
        cos = np.clip(_dot(n, ldir), 0, None)
        emit = 0.3 + 0.7 * np.clip(-ldir[:, 2], 0, 1)  # a ceiling lamp: shines mostly downwards
        direct = cos * emit / (dist * dist + 2.0)
        max_t = dist
    else:
        ldir = np.broadcast_to(scene.sun_dir, p.shape)
        direct = np.clip(n @ scene.sun_dir, 0, None)
        max_t = np.full(len(sel), np.inf)
    lit = direct > 0
    if lit.any():
        li = np.flatnonzero(lit)
        origin = p[li] + 1e-3 * n[li]
        shadow = _occluded(scene, origin, np.ascontiguousarray(ldir[li]), max_t[li])
        direct[li[shadow]] = 0.0
    hemi = 0.7 + 0.3 * n[:, 2]  # more sky/ceiling bounce on upward-facing surfaces
    light = scene.ambient[None, :] * hemi[:, None] + direct[:, None] * scene.light_color[None, :]
    radiance[sel] = albedo[sel] * light
    if scene.sky is not None:
        sky = _sky_radiance(scene, d)
        fog = np.exp(-((t[sel] / (0.7 * scene.sky_depth)) ** 4))[:, None]  # 1.6% of the surface left at the cap
        radiance[sel] = radiance[sel] * fog + scene.sky["horizon"][None, :] * (1 - fog)
        radiance[~hit] = sky[~hit]
    return radiance


def _tonemap(radiance: np.ndarray, valid: np.ndarray, exposure: float) -> np.ndarray:
    """Hypersim's operator: the valid pixels' 90th-percentile brightness maps to 0.8 after gamma."""
    y = radiance @ np.array([0.3, 0.59, 0.11])
    ref = y[valid] if valid.any() else y
    p90 = np.percentile(ref, 90)
    scale = 0.8 ** 2.2 / p90 * exposure if p90 > 1e-6 else 1.0
    out = np.clip(np.maximum(radiance * scale, 0) ** (1 / 2.2), 0, 1)
    return (out * 255 + 0.5).astype(np.uint8)


def render(scene: Scene, seed_for_meta=None, antialias: bool = True) -> Sample:
    """Ray-cast `scene` from its camera -> Sample (module docstring for the conventions)."""
    cam = scene.camera
    h, w = cam.size
    d = cam.rays()
    t, idx = _trace(scene, cam.position, d)
    valid = idx >= 0
    if scene.sky_depth is not None:
        valid &= t <= scene.sky_depth
    radiance = _shade(scene, d, t, idx)
    if antialias:  # silhouettes: 4 more rays per pixel whose 4-neighbours see another surface
        ent = np.where(valid, idx, -1).reshape(h, w)
        edge = np.zeros((h, w), dtype=bool)
        edge[:, 1:] |= ent[:, 1:] != ent[:, :-1]
        edge[:, :-1] |= ent[:, 1:] != ent[:, :-1]
        edge[1:, :] |= ent[1:, :] != ent[:-1, :]
        edge[:-1, :] |= ent[1:, :] != ent[:-1, :]
        rows, cols = np.nonzero(edge)
        if len(rows):
            offs = np.array([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]])
            rr = (rows[:, None] + 0.5 + offs[None, :, 0]).ravel()
            cc = (cols[:, None] + 0.5 + offs[None, :, 1]).ravel()
            ds = cam.rays(rr, cc)
            ts, ids = _trace(scene, cam.position, ds)
            sub = _shade(scene, ds, ts, ids).reshape(len(rows), 4, 3).mean(1)
            flat = rows * w + cols
            radiance[flat] = 0.2 * radiance[flat] + 0.8 * sub
    rgb = _tonemap(radiance, valid, scene.exposure).reshape(h, w, 3)
    depth = t.astype(np.float32)
    if scene.sky_depth is not None:
        depth[~valid] = scene.sky_depth
    entity = np.where(valid, idx + 1, -1).astype(np.int32)
    textures = [tex.name for p in scene.prims for tex in p.textures]
    meta = {
        "kind": scene.kind,
        "seed": seed_for_meta,
        "size": [h, w],
        "fov_x": float(2 * np.arctan(w / 2 / cam.K[0, 0])),
        "K": cam.K.tolist(),
        "camera": {"position": cam.position.tolist(), "yaw": cam.yaw, "pitch": cam.pitch, "roll": cam.roll},
        "sky_depth": scene.sky_depth,
        "n_objects": len(scene.prims) - 1,
        "textures": sorted(set(textures)),
        "photos": bool(photos_available()),
    }
    return Sample(rgb, depth.reshape(h, w), valid.reshape(h, w), entity.reshape(h, w), meta)


def generate_scene(seed, size=128, kind: str | None = None, fov: float | None = None,
                   antialias: bool = True) -> Sample:
    """Render the procedural scene for `seed`.

    Args:
        seed: anything `numpy.random.default_rng` accepts (an int, or a sequence of ints).
        size: an int (square) or (H, W).
        kind: "indoor", "outdoor", or None (drawn from the seed, half each).
        fov: horizontal field of view in radians; None draws it (45-90 degrees) from the seed.
        antialias: average 4 extra rays on silhouette pixels (RGB only).

    Returns:
        Sample(rgb uint8 HxWx3, depth float32 HxW planar metres, valid bool HxW, entity, meta).
    """
    seed_meta = int(seed) if isinstance(seed, (int, np.integer)) else [int(x) for x in seed]
    return render(build_scene(seed, size, kind, fov), seed_for_meta=seed_meta, antialias=antialias)


class ProceduralDataset(DepthDataset):
    """Procedural scenes as a dataset: item i is `generate_scene(seed_offset + i, size, kind)`,
    with meta["id"] = "procedural_<seed>".

    Args:
        seed_offset: the seed of item 0. Held-out sets use `HELD_OUT_SEED_OFFSET` and up; training
            with seeds from 0 must stay below it.
        length: number of items, or None for an endless dataset (no `len()`; any index >= 0).
        size: image size, an int or (H, W).
        kind: "indoor", "outdoor" or None (both).
    """

    def __init__(self, seed_offset: int = 0, length: int | None = None, size=128, kind: str | None = None):
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0 or None, got {length}")
        self.seed_offset, self.length, self.size, self.kind = int(seed_offset), length, size, kind

    def _get(self, i: int) -> dict:
        seed = self.seed_offset + i
        out = generate_scene(seed, self.size, self.kind).as_dict()
        out["meta"]["id"] = f"procedural_{seed}"
        return out


# ------------------------------------------------------------------ Hypersim-like layout on disk

SPLIT_CSV = "metadata_images_split_scene_v1.csv"
CAMERA_CSV = "metadata_camera_parameters.csv"
META_JSONL = "procedural_metadata.jsonl"


def _h5py():
    try:
        import h5py
    except ImportError:
        return None
    return h5py


def hypersim_frame_paths(out_dir, scene: str, frame: int, camera: str = "cam_00", depth_ext: str = "hdf5") -> dict:
    """Paths of one frame in Hypersim's layout (depth/entity as .hdf5, or .npy without h5py)."""
    img = os.path.join(os.fspath(out_dir), scene, "images")
    geo = os.path.join(img, f"scene_{camera}_geometry_hdf5")
    return {
        "rgb": os.path.join(img, f"scene_{camera}_final_preview", f"frame.{frame:04d}.tonemap.jpg"),
        "depth": os.path.join(geo, f"frame.{frame:04d}.depth_meters.{depth_ext}"),
        "entity": os.path.join(geo, f"frame.{frame:04d}.render_entity_id.{depth_ext}"),
    }


def write_hypersim_layout(out_dir, n: int, seed_offset: int = 0, size=128, frames_per_scene: int = 100,
                          fov_deg: float | None = 60.0, split: str = "train", kind: str | None = None,
                          jpeg_quality: int = 95, depth_format: str = "auto") -> list[dict]:
    """Write n procedural frames to `out_dir` in Hypersim's on-disk layout.

    Frame k (seed `seed_offset + k`) goes to scene `procedural_{k // frames_per_scene:05d}`, camera
    `cam_00`, frame `k % frames_per_scene`:

        <scene>/images/scene_cam_00_final_preview/frame.IIII.tonemap.jpg
        <scene>/images/scene_cam_00_geometry_hdf5/frame.IIII.depth_meters.hdf5
        <scene>/images/scene_cam_00_geometry_hdf5/frame.IIII.render_entity_id.hdf5
        metadata_images_split_scene_v1.csv   (Hypersim's split file: every frame public, `split`)
        metadata_camera_parameters.csv       (scene_name, settings_camera_fov in radians, image W and H)
        procedural_metadata.jsonl            (one line per frame: scene, camera, frame, and Sample.meta)

    As in Hypersim, depth_meters holds the float16 **distance to the camera centre** (not planar
    depth), NaN where there is no geometry (sky), and render_entity_id is int32 with -1 there. The
    HDF5 dataset key is "dataset". A Hypersim loader converts back to planar depth with
    f = (W/2)/tan(fov/2) from the camera CSV (886.81 px for 1024 px at Hypersim's pi/3). Without
    h5py (or with depth_format="npy") the same arrays go to `.npy` files instead.

    Args:
        fov_deg: the horizontal fov of every frame (default 60, Hypersim's); None draws one per
            scene (from the scene's first frame) and uses it for all its frames, since Hypersim
            has one fov per scene.
        frames_per_scene: frames per scene folder (each frame is still its own random scene).

    Returns:
        the metadata lines, one dict per frame.
    """
    h5py = _h5py() if depth_format in ("auto", "hdf5") else None
    if depth_format == "hdf5" and h5py is None:
        raise ImportError("depth_format='hdf5' needs h5py: pip install h5py")
    if depth_format not in ("auto", "hdf5", "npy"):
        raise ValueError(f"depth_format must be auto, hdf5 or npy, got {depth_format!r}")
    ext = "hdf5" if h5py is not None else "npy"
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rows, cams, lines = [], {}, []
    scene_fov = None
    for k in range(n):
        scene_name, frame = f"procedural_{k // frames_per_scene:05d}", k % frames_per_scene
        if frame == 0:
            scene_fov = None if fov_deg is None else np.deg2rad(fov_deg)
        s = generate_scene(seed_offset + k, size, kind, fov=scene_fov)
        scene_fov = s.meta["fov_x"]
        paths = hypersim_frame_paths(out_dir, scene_name, frame, depth_ext=ext)
        for p in paths.values():
            os.makedirs(os.path.dirname(p), exist_ok=True)
        Image.fromarray(s.rgb).save(paths["rgb"], quality=jpeg_quality)
        dist = planar_to_distance(s.depth.astype(np.float64), s.K).astype(np.float16)
        dist[~s.valid] = np.nan
        if h5py is not None:
            with h5py.File(paths["depth"], "w") as f:
                f.create_dataset("dataset", data=dist, compression="gzip", compression_opts=4)
            with h5py.File(paths["entity"], "w") as f:
                f.create_dataset("dataset", data=s.entity, compression="gzip", compression_opts=4)
        else:
            np.save(paths["depth"], dist)
            np.save(paths["entity"], s.entity)
        rows.append([scene_name, "cam_00", frame, "True", "", split])
        cams[scene_name] = (scene_fov, s.rgb.shape[1], s.rgb.shape[0])
        lines.append({"scene_name": scene_name, "camera_name": "cam_00", "frame_id": frame, **s.meta})
    with open(os.path.join(out_dir, SPLIT_CSV), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["scene_name", "camera_name", "frame_id", "included_in_public_release", "exclude_reason",
                     "split_partition_name"])
        wr.writerows(rows)
    with open(os.path.join(out_dir, CAMERA_CSV), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["scene_name", "settings_camera_fov", "settings_output_img_width", "settings_output_img_height"])
        for name, (fov, w, h) in cams.items():
            wr.writerow([name, repr(float(fov)), w, h])
    buf = io.StringIO()
    for line in lines:
        buf.write(json.dumps(line) + "\n")
    with open(os.path.join(out_dir, META_JSONL), "w") as f:
        f.write(buf.getvalue())
    return lines
