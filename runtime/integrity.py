"""Bundle integrity: each file's size and sha256 in the manifest, checked when a bundle is loaded.

No numpy, no torch. A bundle on a robot's flash can be half-written by an interrupted copy or
damaged later; a graph with flipped bytes in its weights still loads and runs, silently wrong.

- Export (`export.manifest.write_manifest`, every writer of a manifest) records
  `"files": {name: {"bytes": n, "sha256": hex}}` for every file the manifest names: the graphs and
  their external data, the codebook, TensorRT engines and their sidecars, the accuracy report.
- Load (`verify_bundle`, called by `DepthRuntime` and `depthart calibrate`):
    - "sizes" (`--no-verify`): a stat per file; refuses a missing file or one of another size
      (an interrupted copy). Costs nothing.
    - "cached" (the default): sizes, then each file's sha256, taken from the hash cache when the
      file's path, size and mtime are those recorded when it was last hashed there. The first start
      after a copy hashes everything; later starts hash nothing that is unchanged.
    - "full": every file re-hashed, cache ignored (and refreshed).
  A file whose hash differs from the manifest's is refused with its name and what to do.

The cache (`hash_cache_path`) is one JSON file outside the bundle, so a read-only bundle works;
a cache that cannot be written only costs a re-hash at the next start. It guards against accidental
damage, not tampering: whoever can edit the bundle can edit the manifest (and the cache).
Bit rot that keeps a file's size and mtime is seen by "full" (or after the cache is deleted).
"""

from __future__ import annotations

import json
import os
import time

from ..errors import DepthartError
from ..fileio import atomic_write_bytes
from ..provenance import file_sha256

FILES_KEY = "files"
MODES = ("sizes", "cached", "full")
FIX = "re-copy the bundle, or re-export it (depthart export ... --force)"


def bundle_files(manifest: dict, engines: bool = True) -> list[str]:
    """Every file (relative to the bundle) the manifest names; TensorRT engines and sidecars only if `engines`."""
    names = []
    for g in manifest.get("graphs", {}).values():
        names += [g["file"], *g.get("data_files", [])]
    for key in ("codebook",):
        if manifest.get(key):
            names.append(manifest[key])
    if (manifest.get("accuracy") or {}).get("file"):
        names.append(manifest["accuracy"]["file"])
    if engines:
        for e in (manifest.get("engines") or {}).values():
            names += [e["file"], e["sidecar"]]
    return list(dict.fromkeys(names))


def fingerprint(path) -> list:
    """[size, mtime_ns] of a file: the cheap "has it changed" test."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def hash_cache_path() -> str:
    """$DEPTHART_CACHE/verified.json, else $XDG_CACHE_HOME/depthart/verified.json, else ~/.cache/depthart/..."""
    root = os.environ.get("DEPTHART_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "depthart")
    return os.path.join(root, "verified.json")


class HashCache:
    """sha256 of files by (absolute path, size, mtime_ns), kept in one JSON file; read once, written by `save`."""

    def __init__(self, path: str | None = None):
        self.path = path or hash_cache_path()
        self.entries: dict = {}
        self.changed = False
        try:
            with open(self.path) as f:
                data = json.load(f)
            if isinstance(data, dict):
                self.entries = data
        except (OSError, ValueError):
            pass  # no cache yet, or an unreadable one: start afresh

    def sha256(self, path, use_cached: bool = True) -> tuple[str, bool]:
        """(sha256 of `path`, whether it was hashed now)."""
        key = os.path.abspath(path)
        fp = fingerprint(path)
        entry = self.entries.get(key)
        if use_cached and isinstance(entry, dict) and entry.get("fingerprint") == fp and entry.get("sha256"):
            return entry["sha256"], False
        digest = file_sha256(path)
        self.remember(path, digest, fp)
        return digest, True

    def remember(self, path, digest: str, fp: list | None = None) -> None:
        self.entries[os.path.abspath(path)] = {"fingerprint": fp or fingerprint(path), "sha256": digest}
        self.changed = True

    def save(self) -> None:
        """Write the cache if it changed; a cache that cannot be written (read-only home) is skipped."""
        if not self.changed:
            return
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}  # forget deleted files
        try:
            atomic_write_bytes(self.path, (json.dumps(live, indent=0, sort_keys=True) + "\n").encode())
            self.changed = False
        except OSError:
            pass


def file_records(bundle_dir, manifest: dict) -> dict:
    """{name: {"bytes", "sha256"}} for every file the manifest names (what export writes into "files").

    Not put into the hash cache: export writes into a temporary folder that is renamed at the end, so
    the first load hashes the bundle once (and the first load on a robot must anyway).
    """
    out = {}
    for name in bundle_files(manifest):
        path = os.path.join(bundle_dir, name)
        if not os.path.isfile(path):
            raise DepthartError(f"{path}: the manifest names it but it does not exist")
        out[name] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
    return out


def verify_bundle(bundle_dir, manifest: dict, mode: str = "cached", engines: bool = True,
                  cache: HashCache | None = None) -> dict:
    """Check the bundle's files against the manifest's "files" record. Raises DepthartError naming a bad file.

    mode: "sizes", "cached" or "full" (module docstring). engines: also check TensorRT engines and sidecars.
    Returns {"mode", "files", "bytes", "hashed_bytes", "seconds", "recorded"}; "recorded" is False for a
    bundle exported before files were recorded (only its files' presence is checked then).
    """
    if mode not in MODES:
        raise DepthartError(f"unknown verification mode {mode!r}; use one of {', '.join(MODES)}")
    bundle_dir = os.fspath(bundle_dir)
    t0 = time.perf_counter()
    records = manifest.get(FILES_KEY)
    wanted = bundle_files(manifest, engines=engines)
    summary = {"mode": mode, "files": len(wanted), "bytes": 0, "hashed_bytes": 0, "recorded": records is not None}
    for name in wanted:
        path = os.path.join(bundle_dir, name)
        if not os.path.isfile(path):
            raise DepthartError(f"{path}: missing (the bundle's manifest lists it); {FIX}")
    if records is None:
        summary["seconds"] = time.perf_counter() - t0
        return summary
    unrecorded = [n for n in wanted if n not in records]
    if unrecorded:
        raise DepthartError(f"{bundle_dir}: manifest.json records no size and hash for {unrecorded} (an edited "
                            f"manifest?); {FIX}")
    for name in wanted:  # sizes first: cheap, and catches a truncated copy before any hashing
        size = os.path.getsize(os.path.join(bundle_dir, name))
        if size != records[name]["bytes"]:
            raise DepthartError(f"{os.path.join(bundle_dir, name)}: damaged: {size:,} bytes, the manifest says "
                                f"{records[name]['bytes']:,} (an interrupted copy?); {FIX}")
        summary["bytes"] += size
    if mode != "sizes":
        cache = cache or HashCache()
        try:
            for name in wanted:
                path = os.path.join(bundle_dir, name)
                digest, hashed = cache.sha256(path, use_cached=mode == "cached")
                summary["hashed_bytes"] += records[name]["bytes"] if hashed else 0
                if digest != records[name]["sha256"]:
                    raise DepthartError(f"{path}: damaged: its sha256 differs from the one in the manifest (the "
                                        f"file was changed or corrupted after export); {FIX}")
        finally:
            cache.save()
    summary["seconds"] = time.perf_counter() - t0
    return summary


def describe(summary: dict) -> str:
    """One line for the CLI: what was checked and what it cost."""
    if not summary["recorded"]:
        return "bundle integrity: not recorded (exported by an older depthart; re-export to record it)"
    if summary["mode"] == "sizes":
        return f"bundle integrity: sizes of {summary['files']} files only (--no-verify: contents not checked)"
    cached = summary["bytes"] - summary["hashed_bytes"]
    return (f"bundle integrity: {summary['files']} files verified (sha256): {summary['hashed_bytes'] / 1e6:.1f} MB "
            f"hashed in {summary['seconds']:.2f} s" + (f", {cached / 1e6:.1f} MB unchanged since their last check"
                                                         if cached else ""))
