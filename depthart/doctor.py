"""`depthart doctor`: what this machine has for running depthart, and which backends can run a bundle.

Every probe is lazy and fails soft: a missing library, driver or GPU becomes a line of the report,
never an exception. No torch unless it is installed (then only to ask about CUDA).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata

import click

POLYGRAPHY_PIP_CUDART = (0, 53, 6)  # first Polygraphy that finds a pip-installed libcudart (nvidia/cuda_runtime/lib)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _tuple(version: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def probe_gpu() -> dict:
    """nvidia-smi's view (GPU 0, driver, the driver's CUDA version) and Jetson's board model."""
    out = {"visible": False}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            q = subprocess.run([smi, "--query-gpu=name,compute_cap,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            rows = [r.split(",") for r in q.stdout.strip().splitlines() if r.strip()] if q.returncode == 0 else []
            out["gpus"] = [{"name": r[0].strip(), "compute_capability": r[1].strip(), "driver": r[2].strip(),
                            "memory": r[3].strip()} for r in rows if len(r) >= 4]
            head = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
            m = re.search(r"CUDA Version:\s*([\d.]+)", head)
            out["driver_cuda"] = m.group(1) if m else None
            out["visible"] = bool(out["gpus"])
        except (OSError, subprocess.TimeoutExpired) as e:
            out["error"] = _reason(e)
    model = "/proc/device-tree/model"
    if os.path.exists(model):
        with open(model, "rb") as f:
            out["board"] = f.read().rstrip(b"\x00").decode(errors="replace")
    if os.path.exists("/etc/nv_tegra_release"):
        with open("/etc/nv_tegra_release") as f:
            out["jetson_l4t"] = f.readline().strip()
        out["visible"] = True
    return out


def probe_cuda() -> dict:
    """The CUDA device depthart would use, through Polygraphy's libcudart wrapper (as the TensorRT backend does)."""
    from depthart.errors import DepthartError
    from depthart.runtime.backends.trt import CudaDevice

    quiet = io.StringIO()  # Polygraphy prints its search for libcudart
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            dev = CudaDevice()
            try:
                info = {"usable": True, **dev.identity()}
                import ctypes

                rt, drv = ctypes.c_int(), ctypes.c_int()
                dev._cuda.handle.cudaRuntimeGetVersion(ctypes.byref(rt))
                dev._cuda.handle.cudaDriverGetVersion(ctypes.byref(drv))
                info["cudart"] = f"{rt.value // 1000}.{rt.value % 1000 // 10}"
                info["driver_cuda"] = f"{drv.value // 1000}.{drv.value % 1000 // 10}"
            finally:
                dev.close()
        return info
    except Exception as e:  # DepthartError from CudaDevice, or anything a broken CUDA install raises
        return {"usable": False, "reason": str(e) if isinstance(e, DepthartError) else _reason(e)}


def probe_tensorrt() -> dict:
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or PyPI's stub without its libraries
        return {"importable": False, "reason": _reason(e)}
    major = _tuple(trt.__version__)[0]
    return {"importable": True, "version": trt.__version__,
            "implicit_int8": major < 11 and hasattr(trt, "IInt8EntropyCalibrator2"),
            "strongly_typed": hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") or major >= 11}


def probe_onnxruntime() -> dict:
    try:
        import onnxruntime as ort
    except Exception as e:
        return {"importable": False, "reason": _reason(e)}
    pkg = "onnxruntime-gpu" if _version("onnxruntime-gpu") else "onnxruntime"
    return {"importable": True, "version": ort.__version__, "package": pkg,
            "providers": ort.get_available_providers()}


def probe_torch() -> dict:
    if _version("torch") is None:
        return {"installed": False}
    try:
        import torch
    except Exception as e:
        return {"installed": True, "importable": False, "reason": _reason(e)}
    out = {"installed": True, "version": torch.__version__, "cuda_build": torch.version.cuda,
           "cuda_available": bool(torch.cuda.is_available())}
    if out["cuda_available"]:
        out["device"] = torch.cuda.get_device_name(torch.cuda.current_device())
    return out


def bundle_backends(bundle_dir, env: dict) -> dict:
    """{backend: {"ok": bool, "why": str}} for "ort:cpu", "ort:cuda", "ort:trt" and "trt" on this bundle."""
    from depthart.errors import DepthartError
    from depthart.runtime.manifest import load_manifest

    try:
        m = load_manifest(os.fspath(bundle_dir))
    except DepthartError as e:
        return {"error": str(e)}
    ort, trt, cuda = env["onnxruntime"], env["tensorrt"], env["cuda"]
    providers = ort.get("providers", [])
    gpu_ok = cuda.get("usable", False)
    no_gpu = "no usable CUDA device" + (f" ({cuda['reason']})" if cuda.get("reason") else "")

    def verdict(ok, why):
        return {"ok": bool(ok), "why": why}

    out = {"precision": m.get("precision", "fp32"), "model": f"depth {m['model']['depth']}, width "
           f"{m['model']['width']}, {m['image_size']} px"}
    out["ort:cpu"] = verdict(ort.get("importable"), "onnxruntime CPU" if ort.get("importable") else
                             "pip install 'depthart[ort]'")
    has_cuda_ep = "CUDAExecutionProvider" in providers
    out["ort:cuda"] = verdict(has_cuda_ep and gpu_ok, "onnxruntime CUDA provider" if has_cuda_ep and gpu_ok else
                              ("pip install 'depthart[ort-gpu]' (x86_64; on Jetson the Jetson Zoo wheel)"
                               if not has_cuda_ep else no_gpu))
    has_trt_ep = "TensorrtExecutionProvider" in providers
    out["ort:trt"] = verdict(has_trt_ep and gpu_ok and trt.get("importable"),
                             "onnxruntime TensorRT provider (builds and caches engines at first run)"
                             if has_trt_ep and gpu_ok and trt.get("importable") else
                             ("onnxruntime has no TensorRT provider" if not has_trt_ep else
                              no_gpu if not gpu_ok else "the TensorRT libraries are missing: " + trt.get("reason", "")))
    engines, ok = m.get("engines") or {}, False
    if not trt.get("importable"):
        why = "TensorRT cannot be imported: " + trt.get("reason", "")
    elif not gpu_ok:
        why = no_gpu
    elif not engines:
        why = "the bundle has no engines: depthart export ... --trt on this machine"
    else:
        from depthart.runtime.backends.trt import check_sidecar

        try:
            for e in engines.values():
                with open(os.path.join(bundle_dir, e["sidecar"])) as f:
                    check_sidecar(json.load(f), trt["version"], cuda)
            ok, why = True, f"{len(engines)} engines built for this TensorRT and GPU"
        except (OSError, ValueError, DepthartError) as err:
            why = str(err)
    out["trt"] = verdict(ok, why)
    return out


def collect(bundle=None) -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "platform": platform.platform(),
           "depthart": _version("depthart"), "gpu": probe_gpu()}
    env["cuda"] = probe_cuda() if env["gpu"]["visible"] else {"usable": False, "reason": "no NVIDIA GPU visible"}
    env["tensorrt"] = probe_tensorrt()
    env["onnxruntime"] = probe_onnxruntime()
    pg = _version("polygraphy")
    env["polygraphy"] = {"version": pg, "finds_pip_cudart": bool(pg) and _tuple(pg) >= POLYGRAPHY_PIP_CUDART}
    env["torch"] = probe_torch()
    if bundle is not None:
        env["bundle"] = {"path": os.fspath(bundle), **bundle_backends(bundle, env)}
    return env


def format_report(env: dict) -> str:
    lines = [f"depthart {env['depthart']} on Python {env['python']}, {env['platform']}"]
    gpu, cuda = env["gpu"], env["cuda"]
    if not gpu["visible"]:
        lines.append("GPU: none visible (no nvidia-smi device, not a Jetson): only onnxruntime on the CPU will run here.")
    else:
        for g in gpu.get("gpus", []):
            lines.append(f"GPU: {g['name']}, compute {g['compute_capability']}, {g['memory']}, driver {g['driver']} "
                         f"(CUDA {gpu.get('driver_cuda') or '?'})")
        if gpu.get("board"):
            lines.append(f"board: {gpu['board']} ({gpu.get('jetson_l4t', '')})")
        lines.append(f"CUDA device in use: {cuda['name']}, compute {cuda['compute_capability']}, runtime "
                     f"{cuda.get('cudart')}" if cuda.get("usable") else f"CUDA: not usable: {cuda.get('reason')}")
    trt = env["tensorrt"]
    if trt["importable"]:
        lines.append(f"TensorRT {trt['version']}: implicit int8 calibration "
                     + ("available (TensorRT 10)" if trt["implicit_int8"] else "absent (TensorRT 11: int8 from Q/DQ "
                                                                                  "bundles only)"))
    else:
        lines.append(f"TensorRT: not importable ({trt['reason']})")
    ort = env["onnxruntime"]
    lines.append(f"onnxruntime {ort['version']} ({ort['package']}): providers {', '.join(ort['providers'])}"
                 if ort["importable"] else f"onnxruntime: not importable ({ort['reason']})")
    pg = env["polygraphy"]
    lines.append(f"Polygraphy {pg['version']}" + ("" if pg["finds_pip_cudart"] else
                                                  " (older than 0.53.6: it misses a pip-installed libcudart)")
                 if pg["version"] else "Polygraphy: not installed (the TensorRT backend and --trt need it)")
    t = env["torch"]
    lines.append("torch: not installed (the runtime does not need it)" if not t["installed"] else
                 f"torch: not importable ({t['reason']})" if not t.get("importable", True) else
                 f"torch {t['version']}: CUDA " + (f"available ({t['device']})" if t["cuda_available"] else
                                                   f"not available (build: {t['cuda_build'] or 'CPU only'})"))
    b = env.get("bundle")
    if b:
        if "error" in b:
            lines.append(f"bundle {b['path']}: {b['error']}")
        else:
            lines.append(f"bundle {b['path']} ({b['model']}, {b['precision']}):")
            for key, label in (("ort:cpu", "--backend ort --device cpu"), ("ort:cuda", "--backend ort --device cuda"),
                               ("ort:trt", "--backend ort --device trt,cuda"), ("trt", "--backend trt")):
                v = b[key]
                lines.append(f"  {'yes' if v['ok'] else 'no ':<4}{label:<32} {v['why']}")
    return "\n".join(lines)


@click.command("doctor")
@click.argument("bundle", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_cmd(bundle, as_json):
    """What this machine has (GPU, CUDA, TensorRT, onnxruntime, Polygraphy, torch) and which backends run BUNDLE.

    \b
    Examples:
      depthart doctor
      depthart doctor bundle/ --json
    """
    env = collect(bundle)
    if as_json:
        click.echo(json.dumps(env, indent=2))
    else:
        click.echo(format_report(env))
