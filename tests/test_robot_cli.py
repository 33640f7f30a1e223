"""`depthart run` with the robot options: a bag in and out, metric depth from a camera height on a procedural
scene with its real intrinsics, --stats, bad options; runtime/live.py keeping the newest frame."""

import json
import time

import numpy as np
from click.testing import CliRunner
from PIL import Image

from depthart.cli import main
from depthart.data.procedural import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.runtime.bag import read_bag
from depthart.runtime.live import Newest, Stats
from test_bag import _image, make_bag


def run(*args):
    return CliRunner().invoke(main, ["run", *[str(a) for a in args]])


def test_bag_through_cli_with_stats(tiny_bundle, tmp_path):
    make_bag(tmp_path / "rec", "sqlite3", [_image(i, "bgr8") for i in range(2)])
    r = run(tiny_bundle["dir"], tmp_path / "rec", "--topic", "/camera/image_raw", "-o", tmp_path / "out",
            "--camera-height", "1.2", "--stats", tmp_path / "stats.jsonl")
    assert r.exit_code == 0, r.output
    got = read_bag(str(tmp_path / "out" / "rec_depth"))
    assert [len(got[t]) for t in ("/depth/image", "/depth/color", "/depth/points")] == [2, 2, 2]
    fits = [json.loads(x) for x in (tmp_path / "out" / "rec_depth.jsonl").read_text().splitlines()]
    assert [f["stamp"] for f in fits] == ["100.000000007", "101.000000007"]
    assert all(f["method"] == "camera-height" and (f["units"] == "m") == (f["scale"] is not None) for f in fits)
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == 2
    r = run(tiny_bundle["dir"], tmp_path / "rec", "--topic", "/nope", "-o", tmp_path / "out2")
    assert r.exit_code == 1 and "no image topic /nope" in r.output and "Traceback" not in r.output


def test_image_metric_with_real_intrinsics(tiny_bundle, tmp_path):
    s = generate_scene(HELD_OUT_SEED_OFFSET + 500_000, 64)
    Image.fromarray(s.rgb).save(tmp_path / "scene.png")
    K = s.K
    r = run(tiny_bundle["dir"], tmp_path / "scene.png", "-o", tmp_path / "out", "--ply",
            "--intrinsics", f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}",
            "--camera-height", s.meta["camera"]["position"][2])
    assert r.exit_code == 0, r.output
    fit = json.loads((tmp_path / "out" / "scene_metric.json").read_text())
    assert fit["method"] == "camera-height" and fit["units"] in ("m", "relative")
    assert (tmp_path / "out" / "scene_m.npy").exists() == (fit["units"] == "m")
    head = (tmp_path / "out" / "scene.ply").read_bytes()[:400]
    assert b"--intrinsics" in head
    r = run(tiny_bundle["dir"], tmp_path / "scene.png", "-o", tmp_path / "o2", "--camera-height", "1",
            "--sparse-depth", tmp_path / "x.csv")
    assert r.exit_code == 1 and "not both" in r.output
    r = run(tiny_bundle["dir"], tmp_path / "scene.png", "-o", tmp_path / "o2", "--intrinsics", "1,2")
    assert r.exit_code == 1 and "fx,fy,cx,cy" in r.output


def test_newest_drops_stale_frames(tmp_path):
    def camera():
        for i in range(40):
            time.sleep(0.002)
            yield i

    live, seen = Newest(camera()), []
    stats = Stats(str(tmp_path / "s.jsonl"), "camera:0")
    for frame, captured in live:
        time.sleep(0.02)  # a model slower than the camera
        seen.append(frame)
        stats.add(captured, 20.0, live.dropped)
    stats.close()
    assert seen[-1] == 39 and seen == sorted(seen) and len(seen) < 40
    assert live.dropped + len(seen) == 40
    recs = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(recs) == len(seen) and recs[-1]["dropped"] == live.dropped and recs[-1]["latency_ms"] >= 20
