"""Spec validation, feature backends, and image matching + lifting on rendered images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from eval_perception_fixtures import rendered_scene, write_spec

from kil_perception.backends import make_backend
from kil_perception.backends.effnet import EffNetLite0Backend, build_model
from kil_perception.extraction import ImageMatcher, keypoints_message
from kil_perception.lifting import depth_in_metres
from kil_perception.spec import SpecError, load_spec


@pytest.fixture(scope="module")
def scene():
    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    truth = {}
    for name, obj_name in (("rim", "mug"), ("handle", "mug"), ("top", "block"), ("corner", "block")):
        point = world.keypoints(obj_name)[name]
        truth[f"{obj_name}_{name}"] = (intr.project(to_cam.apply(point)[None])[0], point)
    yield rgb, depth, world, truth
    world.close()


@pytest.mark.parametrize("name", ["classic", "effnet_lite0"])
def test_backends_are_dense_and_deterministic(name: str) -> None:
    backend = make_backend(name)
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    a, b = backend.features(image), backend.features(image)
    assert a.ndim == 3 and a.shape[1:] == (96 // backend.stride, 128 // backend.stride)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_effnet_weights_come_from_the_package() -> None:
    pretrained, random = build_model(pretrained=True), build_model(pretrained=False)
    first = next(iter(pretrained.state_dict()))
    assert not torch.equal(pretrained.state_dict()[first], random.state_dict()[first])
    backend = EffNetLite0Backend(model=random)  # a tiny/random model plugs into the same backend
    assert backend.features(np.zeros((64, 64, 3), np.uint8)).shape[0] == 24 + 40 + 112
    with pytest.raises(ValueError, match="unknown feature backend 'radio9'"):
        make_backend("radio9")


@pytest.mark.parametrize("backend_name", ["effnet_lite0", "classic"])
def test_image_matching_finds_keypoints_after_the_object_moved(tmp_path: Path, scene, backend_name: str) -> None:
    rgb, _, _, truth = scene
    spec = load_spec(write_spec(tmp_path, rgb, {k: tuple(uv) for k, (uv, _) in truth.items()}))
    matcher = ImageMatcher(spec, make_backend(backend_name))
    # The same objects elsewhere on the table and turned: a new frame.
    rgb2, depth2, world2 = rendered_scene(position=(0.42, 0.12), yaw=0.1)
    intr, to_cam = world2.camera_intrinsics, world2.camera_extrinsics.inverse()
    found = matcher.extract(rgb2)
    expected = np.array(
        [intr.project(to_cam.apply(world2.keypoints(k.split("_")[0])[k.split("_")[1]])[None])[0] for k in truth]
    )
    errors = np.linalg.norm(found.uv - expected, axis=1)
    tolerance = 15.0 if backend_name == "effnet_lite0" else 40.0
    assert np.median(errors) < tolerance, errors
    message = keypoints_message(
        spec,
        found,
        depth_in_metres(depth2, "16UC1"),
        intr,
        world2.camera_extrinsics,
        stamp_ns=5,
        method="image",
        backend=backend_name,
    )
    assert message.names == ("mug_rim", "mug_handle", "block_top", "block_corner")
    assert message.frame_id == "link_base" and message.similarities.shape == (4, 4)
    good = errors < 5.0
    if good.any() and backend_name == "effnet_lite0":
        truth_points = np.array([world2.keypoints(k.split("_")[0])[k.split("_")[1]] for k in truth])
        assert np.linalg.norm(message.points[good] - truth_points[good], axis=1).max() < 0.03
    world2.close()


def test_spec_errors_name_file_and_field(tmp_path: Path, scene) -> None:
    rgb = scene[0]
    path = write_spec(tmp_path, rgb, {"a": (10, 10), "b": (20, 20)})
    with pytest.raises(SpecError, match=r"spec.yaml: categories\[0\].references\[0\].keypoints: 2 keypoints; 3-6"):
        load_spec(path)
    path = write_spec(tmp_path, rgb, {"a": (10, 10), "b": (20, 20), "c": (700, 20)})
    with pytest.raises(SpecError, match=r"keypoints.c: \(700.0, 20.0\) is outside the 640x480 image"):
        load_spec(path)
    (tmp_path / "bad.yaml").write_text("categories:\n  - name: x\n    instances: 3\n")
    with pytest.raises(SpecError, match=r"bad.yaml: categories\[0\].instances: must be 1 or 2"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    good = load_spec(write_spec(tmp_path, rgb, {"a": (10, 10), "b": (20, 20), "c": (30, 30)}))
    assert good.num_keypoints == 3 and good.layout()[0] == ("thing", 0, "a")
    assert load_spec(path.parent / "spec.yaml").categories[0].prompt == "thing"


def test_extract_cli_json_overlay_and_3d(tmp_path: Path, scene) -> None:
    import json
    import subprocess
    import sys

    import cv2

    from kil_interfaces.calibration import save_extrinsics, save_intrinsics

    rgb, depth, world, truth = scene
    spec = write_spec(tmp_path / "spec", rgb, {k: tuple(uv) for k, (uv, _) in truth.items()})
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "depth.png"), depth)
    save_intrinsics(tmp_path / "info.yaml", world.camera_intrinsics)
    save_extrinsics(tmp_path / "cal.yaml", world.camera_extrinsics)
    command = [
        sys.executable,
        "-m",
        "kil_perception.extract",
        "--spec",
        str(spec),
        "--image",
        str(tmp_path / "frame.png"),
        "--depth",
        str(tmp_path / "depth.png"),
        "--camera-info",
        str(tmp_path / "info.yaml"),
        "--extrinsics",
        str(tmp_path / "cal.yaml"),
        "--backend",
        "classic",
        "--json",
        "--overlay",
        str(tmp_path / "overlay.png"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frame_id"] == "link_base" and len(report["keypoints"]) == 4
    for kp in report["keypoints"]:
        uv, point = truth[kp["name"]]
        # The reference image itself: integer-pixel matches of sub-pixel references. Where the
        # descriptor is flat a neighbouring pixel can win by float rounding, which varies with the
        # thread count (seen once in CI: 1.34 px), hence 1.5 px.
        assert abs(kp["u"] - uv[0]) <= 1.5 and abs(kp["v"] - uv[1]) <= 1.5
        assert kp["valid"] and np.linalg.norm(np.array(kp["point"]) - point) < 0.01
    assert cv2.imread(str(tmp_path / "overlay.png")).shape == rgb.shape
    bad = subprocess.run([*command[:4], str(tmp_path / "nope.yaml"), *command[5:7]], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope.yaml: spec file not found" in bad.stderr


def test_sim_dataset_and_accuracy_evaluation(tmp_path: Path) -> None:
    from kil_eval.perception_dataset import write_dataset
    from kil_perception.evaluate import evaluate

    write_dataset("pour_bottle", tmp_path / "static", settings=["in_distribution"], count=2)
    (row,) = evaluate(tmp_path / "static", "effnet_lite0", "image")
    assert row["scored"] >= 2 and set(row["keypoints"]) <= {"mouth", "shoulder", "base_front", "base"}
    assert row["median_px"] < 20 and 0.0 <= row["pck@5"] <= row["pck@10"] <= row["pck@20"] <= 1.0
    (masked,) = evaluate(tmp_path / "static", "effnet_lite0", "instance")
    assert masked["scored"] == row["scored"] and masked["median_px"] < 20
    with pytest.raises(ValueError, match="no sequences to track"):
        evaluate(tmp_path / "static", "effnet_lite0", "track")
    # One row per keypoint: the pooled row's frames split over the keypoints, each named.
    per_keypoint = evaluate(tmp_path / "static", "effnet_lite0", "instance", per_keypoint=True)
    assert sum(r["scored"] for r in per_keypoint) == masked["scored"]
    assert all(len(r["keypoints"]) == 1 for r in per_keypoint) and len(per_keypoint) >= 2
    assert {r["keypoints"][0] for r in per_keypoint} <= set(masked["keypoints"])


def test_sim_dataset_at_another_resolution_with_finer_features(tmp_path: Path) -> None:
    """--width/--height render the dataset (reference included) at the asked size; the evaluation
    with the frames resized x2 for the features still scores pixels of that size."""
    from kil_eval.perception_dataset import main
    from kil_perception.evaluate import evaluate

    out = tmp_path / "small"
    assert main(["--task", "pour_bottle", "--out", str(out), "--settings", "in_distribution", "--episodes", "2",
                 "--width", "160", "--height", "120"]) == 0  # fmt: skip
    content = yaml.safe_load((out / "dataset.yaml").read_text())
    for image in [content["reference"]["image"], *(f["image"] for f in content["frames"])]:
        assert cv2.imread(str(out / image)).shape == (120, 160, 3)
    for frame in content["frames"]:
        assert all(0 <= u < 160 and 0 <= v < 120 for u, v in frame["keypoints"].values())
    (plain,) = evaluate(out, "effnet_lite0", "instance")
    (fine,) = evaluate(out, "effnet_lite0", "instance", feature_scale=2.0)
    assert fine["feature_scale"] == 2.0 and fine["scored"] == plain["scored"]
    assert fine["median_px"] < 10  # a keypoint found at twice the size would be tens of px off


def test_sim_sequences_score_tracking_beside_matching(tmp_path: Path) -> None:
    """An expert video (the bottle is grasped, lifted and poured): tracking, started by instance
    matching, is scored on the same frames as the per-frame methods."""
    import yaml

    from kil_eval.perception_dataset import write_dataset
    from kil_perception.evaluate import evaluate

    write_dataset("pour_bottle", tmp_path, settings=["in_distribution"], count=1, sequences=1, sequence_hz=2.0)
    frames = yaml.safe_load((tmp_path / "dataset.yaml").read_text())["frames"]
    video = [f for f in frames if f.get("sequence")]
    assert len(video) >= 10 and [f["stamp_ns"] for f in video] == sorted(f["stamp_ns"] for f in video)
    assert len({tuple(map(tuple, f["keypoints"].values())) for f in video}) > len(video) // 2  # the bottle moves
    rows = {(r["method"], r["setting"]): r for m in ("image", "track") for r in evaluate(tmp_path, "classic", m)}
    seq = "in_distribution seq"
    assert set(rows) == {("image", "in_distribution"), ("image", seq), ("track", seq)}
    track, image = rows["track", seq], rows["image", seq]
    assert track["scored"] == image["scored"] > 0
    assert track["median_px"] is not None and 0.0 <= track["pck@5"] <= track["pck@20"] <= 1.0
