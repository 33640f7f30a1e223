"""The `depthart` command line. Commands are thin: the work is in the library.

torch is imported only inside the commands that need it, so `depthart --help` works on a
torch-free runtime install.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import click

from . import __version__
from .calibration.cli import calibrate_cmd
from .config import DEFAULT_CHECKPOINT, PRESETS, default_checkpoint  # noqa: F401 (DEFAULT_CHECKPOINT: public name)
from .doctor import doctor_cmd
from .errors import DepthartError
from .evaluation.cli import eval_cmd
from .progress import bar as progress_bar, quiet_option
from .runtime.media import IMAGE_SUFFIXES
from .train.cli import render_data_cmd, train_cmd, train_vqvae_cmd


@click.group(name="depthart", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="depthart")
def main():
    """depthart: monocular depth with a visual autoregressive transformer (DepthART).

    \b
    Examples:
      depthart import-var --vae vae_ch160v4096z32.pth --var var_d16.pth -o var_d16.safetensors
      depthart import-release model.safetensors -o depthart_d16.safetensors   # the DepthART release
      depthart predict photo.jpg more_photos/ -o out/ --checkpoint model.safetensors
      depthart predict samples/coffee.jpg -o out/ --checkpoint tiny     # random weights
      depthart export --checkpoint model.safetensors -o bundle/ [--trt]

    Run `depthart COMMAND -h` for a command's options.
    """


def _fail(msg: str):
    raise click.ClickException(msg)


def _load_model(checkpoint, device="cpu"):
    """depthart.load, with its warnings (e.g. a preset's random weights) shown as one-line messages."""
    from .checkpoint import load_reporting

    return load_reporting(checkpoint, device, lambda msg: click.echo(f"warning: {msg}", err=True))


def _default_checkpoint(checkpoint):
    """--checkpoint, or the trained default shipped with depthart when none is given."""
    if checkpoint is not None:
        return checkpoint
    try:
        return default_checkpoint()
    except DepthartError as e:
        _fail(str(e))


def _resolve_sampler(sampler: str, model) -> str:
    """--sampler auto -> the sampler the loaded checkpoint recommends (said on stderr when it is not greedy)."""
    from .checkpoint import model_sampler

    if sampler != "auto":
        return sampler
    sampler = model_sampler(model)
    if sampler != "greedy":
        click.echo(f"sampler: {sampler} (recommended by the checkpoint; --sampler greedy for argmax)", err=True)
    return sampler


MAX_PIXELS_HELP = ("Refuse image files above this many pixels (default 150,000,000; files above 25 MP are decoded "
                   "at 1/2-1/8 size, and their depth maps come at that size).")


def _max_pixels(max_pixels):
    """--max-pixels: the limit for load_image; Pillow's own bomb check (179 MP) must not refuse first."""
    from PIL import Image

    from .preprocess import MAX_PIXELS

    max_pixels = max_pixels or MAX_PIXELS
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # this process is the CLI: depthart's limit is the one that counts
    return max_pixels


def _write_failed(e: OSError, output_dir, done: int):
    """Stop on an output that cannot be written (disk full, read-only): the next ones would fail too."""
    _fail(f"cannot write to {output_dir} ({e.strerror or e}); {done} input(s) written before are complete, "
          "nothing half-written is left")


def _need_torch():
    try:
        import torch  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError:
        _fail('this command needs PyTorch: pip install torch==2.13.0 "depthart[torch]"')


@main.command("import-var")
@click.option("--vae", "vae_path", required=True, type=click.Path(dir_okay=False),
              help="VAR's VQ-VAE checkpoint, e.g. vae_ch160v4096z32.pth.")
@click.option("--var", "var_path", required=True, type=click.Path(dir_okay=False),
              help="VAR's transformer checkpoint, e.g. var_d16.pth (any released size).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the depthart checkpoint (.safetensors).")
@click.option("--attn", type=click.Choice(["l2norm", "plain"]), default=None,
              help="Attention variant. Default: what the checkpoint has (l2norm for VAR's releases); "
                   "'plain' drops scale_mul_1H11 as the DepthART release does.")
@click.option("--patch-nums", default=None, metavar="1,2,3,...",
              help="Scale schedule, if not VAR's default 1,2,3,4,5,6,8,10,13,16.")
@click.option("--heads", type=click.IntRange(min=1), default=None,
              help="Attention heads, for checkpoints without scale_mul_1H11 that break VAR's heads = depth rule.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def import_var_cmd(vae_path, var_path, output, attn, patch_nums, heads, overwrite):
    """Convert official VAR checkpoints into a depthart checkpoint.

    Sizes (depth, width, VQ-VAE channels) are read from the tensors; nothing is downloaded.
    """
    _need_torch()
    from .checkpoint import import_var

    if os.path.exists(output) and not overwrite:
        _fail(f"{output} exists; pass --overwrite to replace it")
    pn = _parse_patch_nums(patch_nums)
    try:
        model = import_var(vae_path, var_path, output, patch_nums=pn, attn=attn, heads=heads)
    except DepthartError as e:
        _fail(str(e))
    _report_import(output, model)


def _parse_patch_nums(patch_nums):
    if not patch_nums:
        return None
    try:
        return tuple(int(p) for p in patch_nums.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {patch_nums!r}",
                                 param_hint="--patch-nums") from None


def _report_import(output, model):
    cfg = model.cfg
    click.echo(f"wrote {output}: depth {cfg.depth}, width {cfg.width}, {cfg.heads} heads, attention {cfg.attn}, "
               f"{model.num_transformer_params():,} transformer parameters, VQ-VAE ch {cfg.vae_ch} "
               f"vocab {cfg.vocab_size} z{cfg.cvae}, {cfg.image_size} px, scales {','.join(map(str, cfg.patch_nums))}")


@main.command("import-release")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the depthart checkpoint (.safetensors).")
@click.option("--patch-nums", default=None, metavar="1,2,3,...",
              help="Scale schedule; default: read from the file's lvl_1L.")
@click.option("--heads", type=click.IntRange(min=1), default=None,
              help="Attention heads (the file does not record them). Default: VAR's rule, heads = depth.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def import_release_cmd(file, output, patch_nums, heads, overwrite):
    """Convert the DepthART release's model.safetensors into a depthart checkpoint.

    FILE is the file the release's trainer writes (github.com/bulatko/DepthART); sizes are read from the
    tensors. `depthart predict/export/eval --checkpoint FILE` also read it directly; converting once
    makes loading faster and records the config.
    """
    _need_torch()
    from .checkpoint import import_release

    if os.path.exists(output) and not overwrite:
        _fail(f"{output} exists; pass --overwrite to replace it")
    pn = _parse_patch_nums(patch_nums)
    notes = []
    try:
        model = import_release(file, output, patch_nums=pn, heads=heads, notes=notes)
    except DepthartError as e:
        _fail(str(e))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    _report_import(output, model)


def _expand_inputs(inputs) -> list[str]:
    """Files as given (bad ones are reported later, by name); folders expand to their images, sorted."""
    out = []
    for p in inputs:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                click.echo(f"warning: {p}: folder has no images", err=True)
            out.extend(found)
        else:
            out.append(p)
    return out


def _unique_stems(paths: list[str]) -> list[str]:
    """Output stems: the file name without suffix, made unique when two inputs share one."""
    stems, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0] or "image"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else f"{stem}_{n}")
    return stems


@main.command("predict")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <stem>.npy (float32), <stem>.png (16-bit) and <stem>_color.png.")
@click.option("-c", "--checkpoint", envvar="DEPTHART_CHECKPOINT", default=None, metavar="PATH|PRESET",
              help="Default: the trained model shipped with depthart. A depthart checkpoint (.safetensors), or a preset name "
                   f"({', '.join(PRESETS)}) for random weights. Env: DEPTHART_CHECKPOINT.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--sampler", type=click.Choice(["auto", "greedy", "expect", "topk", "mean"]), default="auto",
              show_default=True,
              help="Token choice per scale. auto: the one the checkpoint recommends (its metadata; greedy when "
                   "it names none, and for presets); greedy: argmax; expect: the expected code vector under the "
                   "predicted distribution; topk: top-k/top-p sampling; mean: the release's mean of N samples.")
@click.option("--top-k", type=int, default=None, help="For topk/mean: keep the k most likely tokens (mean: 900; 0 = off).")
@click.option("--top-p", type=float, default=None, help="For topk/mean: nucleus mass (mean: 0.9; 0 = off).")
@click.option("--num-samples", default=5, show_default=True, help="For mean.")
@click.option("--seed", type=int, default=None,
              help="Seed for the samplers; every image starts from it, so results do not depend on input order.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=MAX_PIXELS_HELP)
@quiet_option
def predict_cmd(images, output_dir, checkpoint, device, sampler, top_k, top_p, num_samples, seed, overwrite,
                max_pixels):
    """Predict relative depth (0 = near, 1 = far) for images and folders of images.

    A bad input (missing, empty, truncated, not an image) is reported by name and skipped;
    the exit status is 1 if any input failed.
    """
    _need_torch()
    import torch

    from .outputs import output_paths, save_depth
    from .preprocess import ImageError, load_image
    from .sampling import make_sampler

    max_pixels = _max_pixels(max_pixels)
    paths = _expand_inputs(images)
    if not paths:
        _fail("no input images")
    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    try:
        model = _load_model(_default_checkpoint(checkpoint), device)
    except DepthartError as e:
        _fail(str(e))
    sampler = _resolve_sampler(sampler, model)

    failed, written = [], 0
    stems = _unique_stems(paths)
    with progress_bar(list(zip(paths, stems)), desc="predicting", unit="image") as bar:
        for path, stem in bar:
            if not overwrite and any(os.path.exists(p) for p in output_paths(output_dir, stem).values()):
                failed.append(f"{path}: outputs for '{stem}' exist in {output_dir}; pass --overwrite")
                continue
            try:
                samp = make_sampler(sampler, top_k=top_k, top_p=top_p, num_samples=num_samples, seed=seed)
                depth = model.predict(load_image(path, max_pixels=max_pixels), sampler=samp)
                save_depth(depth, output_dir, stem, overwrite=overwrite)
            except (ImageError, FileExistsError) as e:
                failed.append(str(e))
            except OSError as e:
                _write_failed(e, output_dir, written)
            else:
                written += 1
    for msg in failed:
        click.echo(f"error: {msg}", err=True)
    done = len(paths) - len(failed)
    click.echo(f"{done} of {len(paths)} images written to {output_dir}", err=True)
    if failed:
        sys.exit(1)


@main.command("export")
@click.option("-c", "--checkpoint", envvar="DEPTHART_CHECKPOINT", default=None, metavar="PATH|PRESET",
              help="Default: the trained model shipped with depthart. A depthart checkpoint (.safetensors), or a preset name for random weights. "
                   "Env: DEPTHART_CHECKPOINT.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="The bundle folder to write.")
@click.option("--trt", is_flag=True, help="Also build TensorRT engines (needs TensorRT and an NVIDIA GPU).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="Bundle precision: fp16 keeps sensitive ops in fp32; int8 is calibrated Q/DQ (see docs/precision.md).")
@click.option("--calib-images", type=click.Path(file_okay=False, exists=True), default=None,
              help="int8: folder of calibration images (default: procedural scenes).")
@click.option("--num-calib", type=click.IntRange(1), default=16, show_default=True, help="int8: calibration images.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="int8: how activation ranges are chosen.")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="Batch size of the engines.")
@click.option("--workspace-mb", type=click.IntRange(min=16), default=None, help="TensorRT builder workspace limit.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="TensorRT timing cache file to reuse and update.")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime vs PyTorch parity check.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def export_cmd(checkpoint, output, trt, precision, calib_images, num_calib, calib_method, batch, workspace_mb,
               timing_cache, no_check, force):
    """Export a checkpoint to a bundle: ONNX graphs + manifest.json (+ TensorRT engines with --trt).

    Every graph is checked against an op allowlist for TensorRT 10.3 .. 11.x and, unless
    --no-check, run in onnxruntime (CPU) against PyTorch eager on a test image.
    """
    _need_torch()
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        import polygraphy  # noqa: F401
    except ImportError as e:
        _fail(f"export needs the export extra ({e.name} is missing): pip install \"depthart[export]\"")
    if not no_check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            _fail('the parity check runs the graphs in onnxruntime: pip install "depthart[ort]" (or [ort-gpu]), '
                  "or pass --no-check")
    from .export.bundle import export_bundle
    from .export.manifest import file_sha256, write_manifest

    if os.path.exists(output) and not force:
        _fail(f"{output} exists; pass --force to replace it")
    checkpoint = _default_checkpoint(checkpoint)
    try:
        model = _load_model(checkpoint)
        sha = file_sha256(checkpoint) if os.path.isfile(checkpoint) else None
        say = lambda m: click.echo(f"  {m}", err=True)  # noqa: E731
        fp32_dir = output if precision == "fp32" else os.path.join(
            os.path.dirname(os.path.abspath(output)), f".{os.path.basename(os.path.abspath(output))}.fp32")
        manifest = export_bundle(model, fp32_dir, source=checkpoint, checkpoint_sha256=sha,
                                 force=force or fp32_dir != output, check=not no_check, progress=say)
        if precision != "fp32":
            import shutil

            from .calibration.quantize import make_precision_bundle

            fp32_parity = manifest["parity"]
            try:
                manifest = make_precision_bundle(fp32_dir, output, precision, calib_images=calib_images,
                                                 num_calib=num_calib, method=calib_method, force=force, progress=say)
            finally:
                shutil.rmtree(fp32_dir, ignore_errors=True)
            manifest["parity"] = fp32_parity  # the fp32 graphs' parity; the precision's cost: depthart calibrate --report
    except DepthartError as e:
        _fail(str(e))
    parity = manifest["parity"] or {}
    click.echo(f"{'graph':<10} {'MB':>9} {'ops':>4}  max abs diff vs eager")
    for name, g in manifest["graphs"].items():
        err = max((parity.get("max_abs") or {}).get(name, {}).values(), default=None)
        click.echo(f"{name:<10} {g['bytes'] / 1e6:>9.2f} {len(g['ops']):>4}  {'-' if err is None else f'{err:.2e}'}")
    samp = manifest.get("sampler", "greedy")
    click.echo(f"wrote {output}" + ("" if samp == "greedy" else f" (runtime sampler: {samp}, from the checkpoint)"))
    if parity and not parity["passed"]:
        _fail("parity check FAILED: " + "; ".join(parity["failures"]))
    if trt:
        from .export.trt import build_engines

        try:
            engines = build_engines(output, manifest, batch=batch, workspace_mb=workspace_mb,
                                    timing_cache=timing_cache, progress=lambda m: click.echo(f"  {m}", err=True))
        except DepthartError as e:
            _fail(str(e))
        manifest["engines"] = {name: {"file": f, "sidecar": f"{f}.json", "precision": manifest["precision"],
                                      "batch": batch}
                               for name, f in engines.items()}
        write_manifest(output, manifest)
        click.echo(f"built {len(engines)} TensorRT engines in {output}")


@main.command("run")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False), help="Where outputs go.")
@click.option("--backend", type=click.Choice(["ort", "trt"]), default="ort", show_default=True,
              help="onnxruntime (CPU/CUDA providers) or TensorRT engines.")
@click.option("--device", default="cpu", show_default=True,
              help="onnxruntime execution providers in order: cpu, cuda, trt (comma-separated).")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="Images per pass.")
@click.option("--sampler", type=click.Choice(["auto", "greedy", "expect"]), default="auto", show_default=True,
              help="Token choice per scale. auto: the one in the bundle's manifest (what its checkpoint recommends; "
                   "greedy when it names none); greedy: argmax; expect: the expected code vector.")
@click.option("--side-by-side", is_flag=True, help="Also write <stem>_side.png (input | colour depth).")
@click.option("--ply", is_flag=True, help="Also write <stem>.ply, a point cloud from assumed intrinsics.")
@click.option("--fov", default=60.0, show_default=True, help="Horizontal field of view assumed for --ply (degrees).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--no-verify", is_flag=True, help="Check the bundle's file sizes only, not their sha256 (hashes are "
                                                 "cached per file, so only the first start after a copy pays).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=MAX_PIXELS_HELP)
@click.option("--stabilize", "smooth", type=click.FloatRange(0.0, 0.95), default=None, metavar="SMOOTH",
              help="Videos and cameras: align each frame's depth scale and shift to the previous frame and keep "
                   "one colour range (less flicker; docs/benchmarks.md); SMOOTH in [0, 0.95] also blends in the "
                   "previous frame (0 = alignment only, 0.5 = half).")
@click.option("--topic", default=None, help="ROS 2 bags: the image topic (sensor_msgs/Image or CompressedImage).")
@click.option("--camera-info-topic", default=None, help="ROS 2 bags: CameraInfo topic (default: the image topic's "
                                                         "camera_info sibling).")
@click.option("--copy-input", is_flag=True, help="ROS 2 bags: also copy the image and camera_info topics to the output.")
@click.option("--intrinsics", default=None, metavar="FX,FY,CX,CY|YAML",
              help="Camera intrinsics in pixels, or a ROS camera_calibration YAML; for --ply, bags and metric depth "
                   "(a bag's CameraInfo wins; --fov is the fallback).")
@click.option("--camera-height", type=float, default=None, metavar="METRES",
              help="Metric depth: the camera's height above a ground plane in view (docs/robotics.md).")
@click.option("--camera-pitch", type=float, default=None, metavar="DEG", help="With --camera-height: the camera's "
                                                                              "pitch, positive looking up.")
@click.option("--sparse-depth", default=None, metavar="FILE|TOPIC",
              help="Metric depth from sparse range points: a CSV/.npy of u,v,z or frame,u,v,z (pixels, metres), or in "
                   "a bag a PointCloud2 topic in the camera's optical frame.")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per frame: latency, fps, dropped frames, scales used, metric fit.")
@click.option("--max-scale", type=int, default=None, metavar="K",
              help="Run only the first K scales (1..the bundle's number) and decode that coarser depth: faster.")
@click.option("--budget-ms", type=float, default=None, metavar="T",
              help="Latency budget per frame: stop before a scale whose measured time (plus the decoder's) "
                   "would pass T ms and decode the coarser depth built so far (the first scale always runs).")
@click.option("--foxglove", is_flag=True, help="Live view: serve input, colour depth, depth and point cloud over the "
                                               "Foxglove WebSocket protocol (docs/robotics.md).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="--foxglove port (0: any free port, printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="--foxglove address to listen on (0.0.0.0: other machines too).")
@click.option("--realtime", is_flag=True, help="--foxglove: replay videos and bags at their own pace, not as fast "
                                               "as the model goes.")
@quiet_option
def run_cmd(bundle, inputs, output_dir, backend, device, batch, sampler, side_by_side, ply, fov, overwrite, no_verify,
            max_pixels, smooth, topic, camera_info_topic, copy_input, intrinsics, camera_height, camera_pitch,
            sparse_depth, stats_path, max_scale, budget_ms, foxglove, port, host, realtime):
    """Run an exported bundle (no PyTorch needed) on images, folders, videos or camera:N.

    Images give <stem>.npy, <stem>.png (16-bit) and <stem>_color.png; videos and cameras give a colour
    depth video <stem>_depth.mp4 at the input's frame rate. Bad inputs are reported by name and
    skipped (exit status 1 at the end); Ctrl-C stops cleanly, keeping what was written.
    """
    import numpy as np

    from .outputs import output_paths, save_depth
    from .preprocess import ImageError, load_image
    from .runtime import DepthRuntime
    from .runtime.integrity import describe
    from .runtime.media import DepthVideoWriter, expand_sources, video_frames, write_ply, write_side_by_side
    from .runtime.stabilize import DepthStabilizer

    max_pixels = _max_pixels(max_pixels)
    try:
        rt = DepthRuntime(bundle, backend=backend, device=device, sampler=sampler, verify=not no_verify,
                          max_pixels=max_pixels, max_scale=max_scale, budget_ms=budget_ms)
    except DepthartError as e:
        _fail(str(e))
    click.echo(describe(rt.verified), err=True)
    click.echo(f"runtime: {rt.describe()}", err=True)
    if max_scale is not None:
        click.echo(f"scales: the first {max_scale} of {rt.num_scales} (--max-scale)", err=True)
    if budget_ms is not None:
        click.echo(f"scales: as many of {rt.num_scales} as fit in {budget_ms:g} ms per frame (--budget-ms)", err=True)
    from .runtime import robot_run

    try:
        robo = robot_run.RobotOptions.make(intrinsics, camera_height, camera_pitch, sparse_depth, fov, stats_path)
    except DepthartError as e:
        _fail(str(e))
    bags = [s for s in inputs if robot_run.is_bag(s)]
    sources = expand_sources([s for s in inputs if s not in bags])
    if not sources and not bags:
        _fail("no inputs found")
    os.makedirs(output_dir, exist_ok=True)
    if foxglove:
        try:
            robo.serve(host, port, realtime)
        except DepthartError as e:
            _fail(str(e))
    failed, done = [], 0
    stems = dict(zip([p for _, p in sources], _unique_stems([p for _, p in sources])))

    def write_image(path, img, depth):
        stem = stems[path]
        save_depth(depth, output_dir, stem, overwrite=overwrite)
        rgb = np.asarray(img)
        if side_by_side:
            write_side_by_side(os.path.join(output_dir, f"{stem}_side.png"), rgb, depth)
        metres = robo.image_metric(rgb, depth, output_dir, stem, path)
        if ply:
            write_ply(os.path.join(output_dir, f"{stem}.ply"), rgb, depth if metres is None else metres, fov_deg=fov,
                      intrinsics=robo.k, metric=metres is not None)
        robo.publish(rgb, depth, metres)

    images = [p for k, p in sources if k == "image"]
    streams = [p for k, p in sources if k in ("video", "camera")]
    try:
        for src in bags:
            done += robot_run.run_bag(rt, robo, src, output_dir, topic, camera_info_topic, copy_input, overwrite,
                                      failed)
        with progress_bar(total=len(images), desc="images", unit="image", disable=not images) as bar:
            for i in range(0, len(images), batch):
                group, loaded = images[i:i + batch], []
                for p in group:
                    wanted = list(output_paths(output_dir, stems[p]).values())
                    wanted += [os.path.join(output_dir, f"{stems[p]}{sfx}") for flag, sfx in
                               ((side_by_side, "_side.png"), (ply, ".ply")) if flag]
                    if not overwrite and any(os.path.exists(q) for q in wanted):
                        failed.append(f"{p}: outputs exist in {output_dir}; pass --overwrite")
                        continue
                    try:
                        loaded.append((p, load_image(p, max_pixels=max_pixels)))
                    except ImageError as e:
                        failed.append(str(e))
                if loaded:
                    results = rt.predict_batch([im for _, im in loaded])
                    for (p, im), res in zip(loaded, results):
                        write_image(p, im, res.depth)
                        done += 1
                bar.update(len(group))
        for src in streams:
            stem = stems[src].replace(":", "_")
            out = os.path.join(output_dir, f"{stem}_depth.mp4")
            if os.path.exists(out) and not overwrite:
                failed.append(f"{src}: {out} exists; pass --overwrite")
                continue
            try:
                fps, count, frames = video_frames(src)
                frames = robo.live(frames, src, fps)  # a camera: newest frame only; timing, drops, metric fit per frame
            except DepthartError as e:
                failed.append(str(e))
                continue
            writer = DepthVideoWriter(out, fps, side_by_side=side_by_side)
            stab = None if smooth is None else DepthStabilizer(smooth)
            try:
                with progress_bar(frames, total=count or None, desc=f"{src} ({fps:.1f} fps)", unit="frame") as bar:
                    for frame in bar:
                        res = rt.predict(frame)
                        depth = frames.step(frame, res.depth, scales=res.scales)
                        if stab is None:
                            writer.write(frame, depth)
                        else:
                            writer.write(frame, stab(depth), *stab.color_range)
                if writer.frames:
                    done += 1
                else:
                    failed.append(f"{src}: no frames could be read")
            except DepthartError as e:
                failed.append(f"{src}: {e}")
            finally:
                writer.close()
    except DepthartError as e:  # the backend failed (a GPU fault, out of memory): nothing more will run
        _fail(f"{e} ({done} input(s) written to {output_dir} before)")
    except OSError as e:  # an output could not be written (disk full, read-only): the next would fail too
        _write_failed(e, output_dir, done)
    except KeyboardInterrupt:
        robo.close()
        click.echo(f"\ninterrupted: {done} input(s) finished; files written so far are complete", err=True)
        sys.exit(130)
    robo.close()
    for msg in failed:
        click.echo(f"error: {msg}", err=True)
    click.echo(f"{done} of {len(sources) + len(bags)} inputs written to {output_dir}", err=True)
    if failed:
        sys.exit(1)


@main.command("bench")
@click.option("-c", "--checkpoint", default=None, metavar="PATH|PRESET",
              help="Model for PyTorch eager (and for the bundle, if --bundle is not given). A preset name "
                   "means random weights, fine for speed.")
@click.option("--bundle", "bundles", type=click.Path(file_okay=False), multiple=True,
              help="An exported bundle; default: export the checkpoint to a temporary folder. Repeat it to time several "
                   "bundles (e.g. fp32 and int8) interleaved in one run.")
@click.option("--backends", default="ort", show_default=True, help="Runtime backends, comma-separated: ort, trt.")
@click.option("--device", default="cpu", show_default=True, help="Eager torch device and onnxruntime providers.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Input image (default: a test image).")
@click.option("--runs", type=click.IntRange(1), default=10, show_default=True, help="Timed runs per contender.")
@click.option("--warmup", type=click.IntRange(0), default=2, show_default=True, help="Untimed runs first.")
@click.option("--no-eager", is_flag=True, help="Skip PyTorch eager (e.g. on a torch-free install).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write all numbers as JSON.")
@click.option("--no-verify", is_flag=True, help="Check the bundle's file sizes only, not their sha256.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for eager torch and onnxruntime alike. Default: the cores other processes leave "
                   "idle (CPUs minus the load average).")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False), default=None,
              help="After the timed runs, run the onnxruntime runtime again with onnxruntime's profiler on: kernel time "
                   "per graph and op type, and one profile JSON per graph in this folder (chrome://tracing, Perfetto).")
@quiet_option
def bench_cmd(checkpoint, bundles, backends, device, image, runs, warmup, no_eager, json_out, no_verify, threads,
              profile_dir):
    """Latency of PyTorch eager vs the runtime backends, same model, same image, same sampler (the bundle's:
    what the checkpoint recommends), interleaved.

    Prints p50/p90/min end to end and per stage, the speed-up over eager, achieved GFLOP/s, memory and
    the machine, with the same thread count for every CPU contender, and flags a machine busy with other
    work (before or during the run). Random-weight presets are fine for speed: depthart bench -c d16
    """
    import json
    import tempfile

    import numpy as np

    from .preprocess import load_image, resize_depth, to_model_input
    from .runtime import DepthRuntime
    from .runtime.bench import (LoadMonitor, StageFlops, default_threads, format_table, machine_info, matmul_gflops,
                                rss_mb, run_interleaved, summarize)

    if checkpoint is None and not bundles:
        _fail("give --checkpoint (a file or preset) and/or --bundle")
    bundles = list(bundles)
    bundle = bundles[0] if bundles else None
    threads = threads or default_threads()
    monitor = LoadMonitor(threads)  # the load average now, before this command's own work
    if image:
        try:
            img = load_image(image)
        except ValueError as e:
            _fail(str(e))
    else:
        from PIL import Image

        img = Image.fromarray((np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)).resize(
            (640, 480), Image.BICUBIC)  # smooth-ish test image
    contenders, memory, flops, stage_flops = {}, {}, None, None
    session_options = {}  # contender -> onnxruntime session options (the bundle's, threads applied)
    tmp = None
    try:
        if checkpoint is not None:
            _need_torch()
            import torch
            from torch.utils.flop_counter import FlopCounterMode

            from .checkpoint import load, model_sampler
            from .sampling import make_sampler

            if device.startswith("cuda") and not torch.cuda.is_available():
                _fail(f"--device {device}: CUDA is not available on this machine; use --device cpu")
            torch.set_num_threads(threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                before = rss_mb()[0]
                try:
                    model = load(checkpoint, "cuda" if device.startswith("cuda") else "cpu")
                except DepthartError as e:
                    _fail(str(e))
            size = model.cfg.image_size
            dev = model.pos_1LC.device
            # eager uses the sampler the runtime will: the bundle's, or the model's (which its export records)
            samp_name = model_sampler(model)
            if bundle is not None:
                from .runtime.manifest import load_manifest, manifest_sampler

                try:
                    samp_name = manifest_sampler(load_manifest(bundle))
                except DepthartError as e:
                    _fail(str(e))
            samp = make_sampler(samp_name)
            x = torch.from_numpy(to_model_input(img, size))[None].to(dev)
            with FlopCounterMode(display=False) as fc:
                counted = StageFlops(fc)
                model.predict_normalized(x, samp, timings=counted)
            flops, stage_flops = float(fc.get_total_flops()), counted.flops

            def eager(im):
                t0 = time.perf_counter()
                t = torch.from_numpy(to_model_input(im, size))[None].to(dev)
                stages = {"preprocess": time.perf_counter() - t0}
                d = model.predict_normalized(t, samp, timings=stages)[0, 0].float().cpu().numpy()
                t1 = time.perf_counter()
                resize_depth(d, im.height, im.width)
                stages["postprocess"] = time.perf_counter() - t1
                stages["total"] = time.perf_counter() - t0
                return stages

            if not no_eager:
                label = f"eager ({dev})" if samp_name == "greedy" else f"eager ({dev}, sampler {samp_name})"
                contenders[label] = eager
                memory[label] = rss_mb()[0] - before
            if bundle is None:
                from .export.bundle import export_bundle

                tmp = tempfile.mkdtemp(prefix="depthart-bench-")
                bundle = os.path.join(tmp, "bundle")
                bundles = [bundle]
                click.echo("exporting the model to a temporary bundle ...", err=True)
                export_bundle(model, bundle, source=str(checkpoint), check=False)
        for b, bdir in [(x.strip(), d) for d in bundles for x in backends.split(",") if x.strip()]:
            before = rss_mb()[0]
            try:
                rt = DepthRuntime(bdir, backend=b, device=device if b == "ort" else "cpu", verify=not no_verify,
                                  threads=threads)
            except DepthartError as e:
                _fail(str(e))
            name = f"{b}: {rt.describe()}"
            if len(bundles) > 1:  # which bundle: its precision (and folder) in the label
                name = f"{b} {rt.manifest.get('precision', 'fp32')} ({os.path.basename(os.path.normpath(bdir))}): " \
                       f"{rt.describe()}"
            contenders[name] = lambda im, rt=rt: rt.predict(im).timings
            memory[name] = rss_mb()[0] - before
            if hasattr(rt.backend, "session_options"):  # onnxruntime: the manifest's session options, threads applied
                session_options[name] = dict(rt.backend.session_options)
        try:
            with progress_bar(total=warmup + runs, desc="benchmarking", unit="round") as bar:
                samples = run_interleaved(contenders, img, runs=runs, warmup=warmup,
                                          progress=lambda i, n: bar.update(1), monitor=monitor)
        except DepthartError as e:  # a backend failed while timed (a GPU fault, out of memory)
            _fail(f"the benchmark stopped: {e}")
        prof = None
        if profile_dir:
            from .runtime.bench import profile_ort

            if device != "cpu":
                click.echo(f"--profile: profiles the onnxruntime CPU provider; --device {device} is not profiled", err=True)
            else:
                prof = profile_ort(bundle, img, threads, runs, profile_dir)
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    machine = machine_info()
    matmul, matmul_source = matmul_gflops(threads=threads)
    summary = summarize(samples, flops, baseline=next((n for n in contenders if n.startswith("eager")), None),
                        stage_flops=stage_flops, matmul=matmul)
    for name in summary:
        summary[name]["rss_load_mb"] = round(memory.get(name, 0.0), 1)
        if name in session_options:
            summary[name]["session_options"] = session_options[name]
    load = monitor.report(samples)
    click.echo(format_table(summary, machine, matmul, flops, load, matmul_source, stage_flops))
    if prof:
        from .runtime.bench import format_profile

        click.echo(format_profile(prof))
    for name, opts in session_options.items():
        click.echo(f"{name.split(':')[0]}: onnxruntime session options: " + ", ".join(f"{k} {v}" for k, v in opts.items()))
    click.echo("memory (RSS growth when loading, MB): " +
               ", ".join(f"{n}: {summary[n]['rss_load_mb']:.0f}" for n in summary) +
               f"; process peak {rss_mb()[1]:.0f} MB")
    if json_out:
        from .fileio import atomic_write_bytes

        data = {"machine": machine, "matmul_gflops": matmul, "matmul_source": matmul_source, "flops_per_frame": flops,
                "flops_per_stage": stage_flops, "profile": prof, "runs": runs,
                "warmup": warmup, "image_size": [img.width, img.height], "threads": threads, "load": load,
                "results": summary,
                "peak_rss_mb": rss_mb()[1]}
        atomic_write_bytes(json_out, (json.dumps(data, indent=2) + "\n").encode())




@main.command("demo")
@click.option("-o", "--output-dir", default="depthart-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the bundle, inputs and outputs go.")
@click.option("-c", "--checkpoint", default=None, metavar="PATH|PRESET",
              help="Model to demo. Default: the trained default shipped with depthart.")
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True, help="Timed runs for the latency table.")
@click.option("--overwrite", is_flag=True, help="Replace an existing demo folder.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for eager torch and onnxruntime alike (default: the idle cores).")
@quiet_option
def demo_cmd(output_dir, checkpoint, runs, overwrite, threads):
    """The whole pipeline in one go: export the model, run the torch-free runtime on sample images
    (procedural scenes with exact depth and a real photo), write colour depth maps and side-by-side
    images, and print eager vs runtime latency."""
    _need_torch()
    import shutil

    import numpy as np
    from PIL import Image

    from .data.procedural import HELD_OUT_SEED_OFFSET, generate_scene
    from .export.bundle import export_bundle
    from .outputs import save_depth
    from .runtime import DepthRuntime
    from .runtime.bench import LoadMonitor, default_threads, format_table, machine_info, run_interleaved, summarize
    from .runtime.media import write_side_by_side

    threads = threads or default_threads()
    monitor = LoadMonitor(threads)  # the load average before this command's own work
    checkpoint = _default_checkpoint(checkpoint)
    if os.path.exists(output_dir):
        if not overwrite:
            _fail(f"{output_dir} exists; pass --overwrite to replace it")
        shutil.rmtree(output_dir)
    try:
        model = _load_model(checkpoint)
        t0 = time.perf_counter()
        bundle = os.path.join(output_dir, "bundle")
        from .export.manifest import file_sha256

        export_bundle(model, bundle, source=str(checkpoint), check=False,
                      checkpoint_sha256=file_sha256(checkpoint) if os.path.isfile(checkpoint) else None,
                      progress=lambda m: click.echo(f"  export {m}", err=True))
        click.echo(f"exported {bundle} in {time.perf_counter() - t0:.0f} s", err=True)
        rt = DepthRuntime(bundle, threads=threads)
    except DepthartError as e:
        _fail(str(e))
    from .sampling import make_sampler

    samp = make_sampler(rt.sampler)  # the runtime follows the bundle (the checkpoint's sampler); eager does too
    inputs = os.path.join(output_dir, "inputs")
    os.makedirs(inputs)
    samples = {}
    for i, seed in enumerate((HELD_OUT_SEED_OFFSET + 1, HELD_OUT_SEED_OFFSET + 2)):
        scene = generate_scene(seed, size=256, kind=("indoor", "outdoor")[i])
        samples[f"procedural_{('indoor', 'outdoor')[i]}"] = Image.fromarray(scene.rgb)
    try:
        from .evaluation.datasets import Middlebury

        samples["middlebury_motorcycle"] = Image.open(os.path.join(Middlebury.default_root(), Middlebury.IMAGE))
    except Exception:  # scikit-image absent: the procedural scenes still run
        click.echo("note: scikit-image is not installed, so the Middlebury photo is skipped", err=True)
    out = os.path.join(output_dir, "outputs")
    worst = 0.0
    for name, img in progress_bar(samples.items(), desc="depth maps (runtime and PyTorch)", unit="image"):
        img = img.convert("RGB")
        img.save(os.path.join(inputs, f"{name}.png"))
        depth = rt.predict(img).depth
        worst = max(worst, float(np.abs(depth - model.predict(img, samp)).max()))
        save_depth(depth, out, name)
        write_side_by_side(os.path.join(out, f"{name}_side.png"), np.asarray(img), depth)
    click.echo(f"wrote {len(samples)} depth maps to {out} (sampler {rt.sampler}; runtime vs PyTorch max abs diff "
               f"{worst:.1e})")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .preprocess import resize_depth, to_model_input

    torch.set_num_threads(threads)
    size = model.cfg.image_size
    first = next(iter(samples.values())).convert("RGB")
    with FlopCounterMode(display=False) as fc:
        model.predict_normalized(torch.from_numpy(to_model_input(first, size))[None], samp)
    timing = progress_bar(total=runs + 1, desc="timing eager vs runtime", unit="round")

    def eager(im):
        t = time.perf_counter()
        stages = {}
        x = torch.from_numpy(to_model_input(im, size))[None]
        d = model.predict_normalized(x, samp, timings=stages)[0, 0].numpy()
        resize_depth(d, im.height, im.width)
        stages["total"] = time.perf_counter() - t
        return stages

    samples_t = run_interleaved({"eager (PyTorch, cpu)": eager, f"runtime ({rt.describe()})":
                                 lambda im: rt.predict(im).timings}, first, runs=runs, warmup=1, monitor=monitor,
                                progress=lambda i, n: timing.update(1))
    timing.close()
    flops = float(fc.get_total_flops())
    click.echo(format_table(summarize(samples_t, flops, baseline="eager (PyTorch, cpu)"), machine_info(), None, flops,
                            monitor.report(samples_t)))


main.add_command(calibrate_cmd)
main.add_command(eval_cmd)
main.add_command(train_cmd)
main.add_command(train_vqvae_cmd)
main.add_command(render_data_cmd)
main.add_command(doctor_cmd)

if __name__ == "__main__":
    main()
