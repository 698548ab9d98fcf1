"""The extraction quality table before training: on recorded demonstrations, the shipped layout's
keypoints are found and close to the ground truth, and a spec with one deliberately wrong point
(the mug's "body" clicked on the table beside the mug) gets that keypoint flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kil_eval.record_demos import record
from kil_eval.specs import make_spec
from kil_policy import extract_bags
from kil_policy.extraction_quality import measure, report
from kil_policy.keypoint_cache import ExtractionConfig, bag_keypoints, colour_frame_count, extract_bag_keypoints
from kil_sim.camera import CameraConfig


def _wrong_spec(directory: Path, camera: CameraConfig) -> Path:
    """The shipped place_mug spec with the mug's "body" clicked on the table beside the mug."""
    make_spec("place_mug", directory, camera)
    spec = yaml.safe_load((directory / "spec.yaml").read_text())
    u, v = spec["categories"][0]["references"][0]["keypoints"]["body"]
    spec["categories"][0]["references"][0]["keypoints"]["body"] = [u - 25.0, v + 12.0]  # on the table
    (directory / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory / "spec.yaml"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[list[Path], CameraConfig, Path]:
    root = tmp_path_factory.mktemp("quality")
    camera = CameraConfig(width=160, height=120)
    bags = record("place_mug", 2, root / "demos", camera_hz=5.0, width=160, height=120, progress=False)
    return bags, camera, root


def test_a_wrong_point_in_the_spec_is_flagged(recorded) -> None:
    bags, camera, tmp_path = recorded
    good = make_spec("place_mug", tmp_path / "good", camera)
    table, suspicious = report([str(b) for b in bags], ExtractionConfig(spec=str(good)))
    assert "mug[0].body" in table and "error px" in table
    assert not [line for line in suspicious if "mug[0].body " in line]
    config = ExtractionConfig(spec=str(_wrong_spec(tmp_path / "bad", camera)))
    table, suspicious = report([str(b) for b in bags], config)
    assert any(line.startswith("mug[0].body is ") and "px from the ground truth" in line for line in suspicious), (
        table,
        suspicious,
    )
    # The numbers are the frames': the error column is the median distance to the recorded truth.
    frames = extract_bag_keypoints(bags[0], config)
    truth = bag_keypoints(bags[0], "/kil/keypoints/oracle")
    (row,) = [r for r in measure([frames], 0.0, [truth]) if r.name == "body"]
    stamps = np.array([t.stamp_ns for t in truth])
    slot = frames[0].names.index("body")
    source = next(k for k, (c, n) in enumerate(zip(truth[0].categories, truth[0].names, strict=True))
                  if (c, n) == ("mug", "body"))  # fmt: skip
    by_hand = [
        np.linalg.norm(f.uv[slot] - truth[int(np.argmin(np.abs(stamps - f.stamp_ns)))].uv[source]) for f in frames
    ]
    assert row.median_error_px == float(np.median(by_hand)) and row.median_error_px > 8
    # The 3-D column: the lifted point against the truth's, over the frames where it is valid.
    nearest = [truth[int(np.argmin(np.abs(stamps - f.stamp_ns)))] for f in frames]
    by_hand_mm = [1000 * np.linalg.norm(f.points[slot] - t.points[source]) for f, t in zip(frames, nearest, strict=True)
                  if f.valid[slot]]  # fmt: skip
    assert by_hand_mm and row.median_error_mm == pytest.approx(float(np.median(by_hand_mm)))
    assert row.median_error_mm > 20  # a point on the table beside the mug, not on it
    assert "3-D mm" in table
    # Once moved: the same distances over the frames where the mug's true body point is more than
    # 1 cm from where the episode started it (the expert carries the mug); the tray never moves.
    start = truth[0].points[source]
    moved = [e for e, t in zip(by_hand, nearest, strict=True) if np.linalg.norm(t.points[source] - start) > 0.01]
    assert 0 < len(moved) < len(frames)
    assert row.median_error_moved_px == pytest.approx(float(np.median(moved)))
    assert row.moved == pytest.approx(len(moved) / len(frames))
    (tray,) = [r for r in measure([frames], 0.0, [truth]) if r.name == "centre"]
    assert tray.moved == 0.0 and tray.median_error_moved_px is None
    assert "moved px" in table


def test_a_keypoint_lost_only_once_its_object_moves_is_flagged() -> None:
    """A keypoint right while its object rests (most frames) and far off once it is carried: the
    all-frames median hides it, the once-moved median flags it."""
    from kil_interfaces.data import KeypointArrayData
    from kil_policy.extraction_quality import flags, format_table

    def frame(t: int, x: float, u: float) -> KeypointArrayData:
        return KeypointArrayData(
            stamp_ns=t * 100_000_000, frame_id="world", method="image", backend="effnet_lite0", names=("heel",),
            categories=("shoe",), instances=np.zeros(1, np.uint8), uv=np.array([[u, 50.0]], np.float32),
            points=np.array([[x, 0.0, 0.0]]), scores=np.ones(1, np.float32), valid=np.ones(1, bool),
        )  # fmt: skip

    # The truth rests at x = 0 for 7 frames, then is carried 5 cm; the extraction stays put.
    truth = [frame(t, 0.0 if t < 7 else 0.05, 100.0 if t < 7 else 140.0) for t in range(10)]
    extracted = [frame(t, 0.0, 100.0) for t in range(10)]
    (row,) = measure([extracted], 0.0, [truth])
    assert row.median_error_px == 0.0 and row.median_error_moved_px == 40.0 and row.moved == pytest.approx(0.3)
    (line,) = flags([row], image_width=320)
    assert line.startswith("shoe[0].heel is 40 px from the ground truth in the median once it has moved"), line
    assert "40.0 (30 %)" in format_table([row])
    # Carried only 5 mm: not moved, nothing flagged.
    truth = [frame(t, 0.0 if t < 7 else 0.005, 100.0 if t < 7 else 140.0) for t in range(10)]
    (row,) = measure([extracted], 0.0, [truth])
    assert row.moved == 0.0 and flags([row], image_width=320) == []


def test_the_extraction_command_counts_frames_flags_and_films(recorded, capsys) -> None:
    """``python -m kil_policy.extract_bags``: one progress bar over every frame to extract, the
    quality table with the wrong point flagged (exit 1 with --strict), an overlay GIF, and the
    cache training reads, so a second run extracts nothing."""
    bags, camera, tmp_path = recorded
    spec = _wrong_spec(tmp_path / "cli", camera)
    capsys.readouterr()  # (what annotating the spec printed)
    # (--min-score: settings of their own, so the other test's cache of the same spec is not reused)
    argv = [
        str(bags[0].parent),
        "--spec",
        str(spec),
        "--min-score",
        "0.05",
        "--gif",
        str(tmp_path / "gifs"),
        "--json",
        "--strict",
    ]
    assert extract_bags.main(argv) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    total = sum(colour_frame_count(b, "/camera/color/image_raw") for b in bags)
    assert out["bags"] == 2 and out["extracted_frames"] == total
    config = ExtractionConfig(spec=str(spec), min_score=0.05)
    assert out["frames"] == sum(len(extract_bag_keypoints(b, config)) for b in bags)
    assert f"{total}/{total}" in captured.err  # the bar reached the frame count
    assert any(line.startswith("mug[0].body is ") for line in out["flags"])
    (row,) = [r for r in out["keypoints"] if r["label"] == "mug[0].body"]
    assert row["valid"] > 0.5 and row["median_error_px"] > 8
    gif = Image.open(out["gifs"][0])
    assert gif.size == (160, 120) and gif.n_frames >= 3
    # Cached now: a second run extracts no frame; without --strict the flags only warn.
    assert extract_bags.main(argv[:-1]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["extracted_frames"] == 0 and again["flags"] == out["flags"]


def test_the_extraction_command_names_what_is_wrong(recorded, tmp_path: Path, capsys) -> None:
    bags, _, root = recorded
    with pytest.raises(SystemExit) as exit_info:
        extract_bags.main([str(tmp_path), "--spec", str(root / "good" / "spec.yaml")])
    assert exit_info.value.code == 2 and "no bags in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        extract_bags.main([str(bags[0]), "--spec", str(tmp_path / "missing.yaml")])
    assert exit_info.value.code == 2 and "missing.yaml" in capsys.readouterr().err


def test_the_extraction_command_tracks_with_the_given_settings(recorded, capsys) -> None:
    """--method track with its tracker settings: the cache written is the one training with those
    settings reads (so a re-detecting tracker is measured before it is trained on); a bad value exits 2."""
    from kil_policy.keypoint_cache import is_cached

    bags, _, root = recorded
    spec = root / "good" / "spec.yaml"
    if not spec.is_file():
        make_spec("place_mug", spec.parent, CameraConfig(width=160, height=120))
    capsys.readouterr()  # (what annotating the spec printed)
    argv = [str(bags[0]), "--spec", str(spec), "--method", "track", "--track-init", "image", "--json"]
    assert extract_bags.main([*argv, "--redetect-every", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["extracted_frames"] == colour_frame_count(bags[0], "/camera/color/image_raw") > 0
    tracked = ExtractionConfig(spec=str(spec), method="track", track_init="image", redetect_every=3)
    assert is_cached(bags[0], tracked)
    assert not is_cached(bags[0], ExtractionConfig(spec=str(spec), method="track", track_init="image"))
    with pytest.raises(SystemExit) as exit_info:
        extract_bags.main([*argv, "--redetect-every", "-1"])
    assert exit_info.value.code == 2 and "redetect_every must be 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        extract_bags.main([*argv, "--mask-guard"])  # (tracks started by image matching have no masks)
    assert exit_info.value.code == 2 and "mask_guard keeps tracks on instance masks" in capsys.readouterr().err


def test_settings_added_later_at_their_neutral_value_keep_the_cache(recorded, monkeypatch) -> None:
    """The cache key leaves out a setting at its neutral value (``NEUTRAL_SETTINGS``): keypoints
    extracted before the setting existed stay cached; set to anything else, it is a new key."""
    from dataclasses import dataclass

    from kil_policy import keypoint_cache

    bags, _, root = recorded
    spec = root / "good" / "spec.yaml"
    if not spec.is_file():
        make_spec("place_mug", spec.parent, CameraConfig(width=160, height=120))

    @dataclass
    class WithALaterSetting(ExtractionConfig):
        later_setting: int = 0

    before = keypoint_cache.cache_key(bags[0], ExtractionConfig(spec=str(spec)))
    monkeypatch.setitem(keypoint_cache.NEUTRAL_SETTINGS, "later_setting", 0)
    assert keypoint_cache.cache_key(bags[0], WithALaterSetting(spec=str(spec))) == before
    assert keypoint_cache.cache_key(bags[0], WithALaterSetting(spec=str(spec), later_setting=2)) != before
    key = keypoint_cache.cache_key
    track = {"spec": str(spec), "method": "track", "track_init": "instance", "instance_source": "masks"}
    assert key(bags[0], ExtractionConfig(**track, redetect_every=4)) != key(bags[0], ExtractionConfig(**track))
    assert key(bags[0], ExtractionConfig(**track, mask_guard=True)) != key(bags[0], ExtractionConfig(**track))
    image = {"spec": str(spec)}
    assert key(bags[0], ExtractionConfig(**image, layout_check=0.1)) != key(bags[0], ExtractionConfig(**image))
    assert key(bags[0], ExtractionConfig(**image, layout_check=0.0)) == before  # off: earlier caches still hit
