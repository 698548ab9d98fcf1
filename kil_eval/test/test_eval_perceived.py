"""Perception-fed policy inputs in the simulator: kil_perception on the simulated camera gives
the oracle's 3-D keypoints back (image and instance matching), tracking resets per episode, and
`kil_eval.evaluate --keypoints perception` runs a checkpoint on them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kil_eval.evaluate import main as evaluate_main
from kil_eval.observations import PerceivedKeypoints
from kil_perception.pipeline import ExtractorConfig
from kil_policy.checkpoint import save_policy
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_sim.oracle import oracle_keypoints
from kil_sim.tasks import evaluation_configurations

NAMES = ("rim", "handle", "opening")


def _mug_index(oracle, name: str) -> int:
    return list(zip(oracle.categories, oracle.names, strict=True)).index(("mug", name))


def _spec(tmp_path: Path) -> tuple[Path, object]:
    """A mug spec annotated (from the oracle's pixels) on the first evaluation configuration."""
    world = evaluation_configurations("place_mug", "in_distribution", 1)[0].make_world()
    world.step(0.3)
    cv2.imwrite(str(tmp_path / "mug.png"), cv2.cvtColor(world.render().rgb, cv2.COLOR_RGB2BGR))
    oracle = oracle_keypoints(world, 0)
    uv = {n: oracle.uv[_mug_index(oracle, n)] for n in NAMES}
    points = "\n".join(f"          {n}: [{u:.1f}, {v:.1f}]" for n, (u, v) in uv.items())
    (tmp_path / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: mug.png\n        keypoints:\n" + points + "\n"
    )
    return tmp_path / "spec.yaml", world


@pytest.mark.parametrize("method", ["image", "instance"])
def test_perceived_keypoints_match_the_oracle(tmp_path: Path, method: str) -> None:
    spec, world = _spec(tmp_path)
    source = PerceivedKeypoints(str(spec), ExtractorConfig(method=method, backend="classic", instance_source="masks"))
    try:
        seen = source(world, 123)
        oracle = oracle_keypoints(world, 123)
    finally:
        world.close()
    assert seen.method == method and seen.frame_id == "link_base" and seen.names == NAMES
    truth = np.array([oracle.points[_mug_index(oracle, n)] for n in NAMES])
    visible = seen.valid[:2]  # rim and handle face the camera (the opening's centre is inside the mug)
    assert visible.all()
    assert np.linalg.norm(seen.points[:2] - truth[:2], axis=1).max() < 0.015


def test_evaluate_with_perception_runs_a_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:
    import kil_eval.evaluate as evaluate

    judged = []  # perception is judged with each frame's time, up to the episode's mishap
    monkeypatch.setattr(evaluate, "keypoint_fault", lambda *a: judged.append(a) or "")
    spec, world = _spec(tmp_path)
    world.close()
    torch.manual_seed(0)
    policy = KeypointDiffusionPolicy(
        PolicyConfig(
            encoder=EncoderConfig(num_keypoints=3, d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
            head=HeadConfig(down_dims=(16, 32), n_groups=4, step_embed_dim=16, inference_steps=3),
        )
    )
    home = torch.tensor([0.25, 0.0, 0.25, 1, 0, 0, 0, -1, 0, 1.0])
    policy.fit_normalizers(home + 0.01 * torch.rand(16, 10), torch.rand(16, 7), torch.rand(16, 3, 3),
                           torch.ones(16, 3, dtype=torch.bool))  # fmt: skip
    checkpoint = save_policy(tmp_path / "checkpoint", policy)
    args = ["--checkpoint", str(checkpoint), "--tasks", "place_mug", "--episodes", "1"]
    args += ["--max-duration", "1.5", "--keypoints", "perception", "--spec", str(spec), "--method", "track"]
    args += ["--backend", "classic", "--json"]
    assert evaluate_main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["keypoints"] == "perception" and report["method"] == "track"
    assert report["results"][0]["episodes"] == 1
    ((errors, _, _, _, _, stamps, until),) = judged
    assert len(stamps) == len(errors) > 1 and np.all(np.diff(stamps) > 0)
    assert until is None  # nothing was dropped or knocked over in 1.5 s at home
    with pytest.raises(SystemExit):
        evaluate_main([*args[:6], "--keypoints", "perception"])  # no --spec
