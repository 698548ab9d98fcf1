"""The extraction quality table before training: on recorded demonstrations, the shipped layout's
keypoints are found and close to the ground truth, and a spec with one deliberately wrong point
(the mug's "body" clicked on the table beside the mug) gets that keypoint flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from kil_eval.record_demos import record
from kil_eval.specs import make_spec
from kil_policy.extraction_quality import measure, report
from kil_policy.keypoint_cache import ExtractionConfig, bag_keypoints, extract_bag_keypoints
from kil_sim.camera import CameraConfig


def test_a_wrong_point_in_the_spec_is_flagged(tmp_path: Path) -> None:
    camera = CameraConfig(width=160, height=120)
    bags = record("place_mug", 2, tmp_path / "demos", camera_hz=5.0, width=160, height=120, progress=False)
    good = make_spec("place_mug", tmp_path / "good", camera)
    table, suspicious = report([str(b) for b in bags], ExtractionConfig(spec=str(good)))
    assert "mug[0].body" in table and "error px" in table
    assert not [line for line in suspicious if "mug[0].body " in line]
    bad_dir = tmp_path / "bad"
    make_spec("place_mug", bad_dir, camera)
    spec = yaml.safe_load((bad_dir / "spec.yaml").read_text())
    u, v = spec["categories"][0]["references"][0]["keypoints"]["body"]
    spec["categories"][0]["references"][0]["keypoints"]["body"] = [u - 25.0, v + 12.0]  # on the table
    (bad_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    config = ExtractionConfig(spec=str(bad_dir / "spec.yaml"))
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
