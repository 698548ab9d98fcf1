"""`make demo`: the end-to-end slices that exist so far.

The full rollout loop (camera -> keypoint_node -> policy_node -> interpolator_node -> arm) lands
with the end-to-end issue. Until then this runs, on the MuJoCo simulation:
  1. every task's scripted expert through the real control path (10 Hz chunks ->
     kil_control.interpolation -> simulated arm), one evaluation configuration each;
  2. recording demonstrations as rosbag2 episodes (python -m kil_eval.record_demos);
  3. reading an episode back from its bag and drawing a contact sheet of its camera frames;
  4. perception: image matching (effnet_lite0) of the mug's keypoints in a new configuration,
     against the simulator's ground truth, with an overlay image;
  5. a short policy training on the recorded demonstrations (oracle keypoints) with its loss curve.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kil_eval.record_demos import record
from kil_interfaces import conversion
from kil_interfaces.typestore import topic_messages
from kil_policy.train import parse_config, train
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import TASKS, evaluation_configurations, sample_configuration


def contact_sheet(bag: Path, out: Path, frames: int = 12) -> None:
    images = [(stamp, conversion.image_to_numpy(msg)) for stamp, msg in topic_messages(bag, "/camera/color/image_raw")]
    chosen = images[:: max(1, len(images) // frames)][:frames]
    cols = 4
    fig, axes = plt.subplots((len(chosen) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * len(chosen) / cols + 1))
    for ax in axes.flat:
        ax.axis("off")
    t0 = chosen[0][0]
    for ax, (stamp, rgb) in zip(axes.flat, chosen, strict=False):
        ax.imshow(rgb)
        ax.set_title(f"t = {(stamp - t0) / 1e9:.1f} s", fontsize=9)
    fig.suptitle(f"{bag.name}: /camera/color/image_raw read back from the bag")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args()
    print("== KIL demo: simulation, recording, annotation, perception and training, end to end on the CPU.")
    print("   (The live loop as ROS nodes runs in `kil_bringup/test/test_bringup_graph.py`.)\n")
    print("-- 1. scripted experts through the control path (sim, in-distribution configuration 0)")
    for name in TASKS:
        start = time.perf_counter()
        result = run_episode(
            evaluation_configurations(name, "in_distribution", 1)[0], config=RolloutConfig(camera_hz=0)
        )
        print(
            f"   {name:22s} {'success' if result.success else 'FAILED':8s} {result.duration_s:5.1f} s simulated "
            f"in {time.perf_counter() - start:4.1f} s"
        )
    print("\n-- 2. two place_mug demonstrations recorded as rosbag2 (MCAP) episodes")
    bags = record("place_mug", 2, args.out / "place_mug")
    for bag in bags:
        size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
        print(f"   {bag} ({size:.1f} MB)")
    print("\n-- 3. an episode read back from its bag")
    sheet = args.out / "place_mug_episode_0000.png"
    contact_sheet(bags[0], sheet)
    print(f"   contact sheet: {sheet}")

    print("\n-- 4. keypoints annotated once (python -m kil_perception.annotate), then image matching on a new")
    print("      place_mug configuration (effnet_lite0)")
    perception(args.out)

    print("\n-- 5. a short policy training on the two demonstrations (a useful policy needs ~50 demos and many")
    print("      more steps; see README)")
    result = train(
        parse_config(
            None,
            [
                f"data=[{args.out / 'place_mug'}]",
                f"out={args.out / 'policy'}",
                "steps=200",
                "batch_size=32",
                "log_every=20",
                "lr=1e-3",
                "warmup_steps=20",
                "topics.keypoints=/kil/keypoints/oracle",
                "policy.head.down_dims=[32,64,128]",
                "policy.encoder.d_model=32",
            ],
        )
    )
    print(
        f"   loss {result.rows[0][1]:.3f} -> {result.rows[-1][1]:.3f}; checkpoint {result.checkpoint}, "
        f"curve {args.out / 'policy' / 'loss.png'}"
    )
    return 0


def perception(out: Path) -> None:
    import cv2
    import numpy as np

    from kil_eval.perception_dataset import visible_keypoints
    from kil_perception import annotate
    from kil_perception.backends import make_backend
    from kil_perception.extraction import ImageMatcher
    from kil_perception.overlay import draw_keypoints
    from kil_perception.spec import load_spec

    reference_world = sample_configuration("place_mug", "train", 0).make_world()
    reference_world.step(0.3)
    reference = reference_world.render()
    cv2.imwrite(str(out / "frame.png"), cv2.cvtColor(reference.rgb, cv2.COLOR_RGB2BGR))
    visible = visible_keypoints(reference_world, "mug", reference)
    reference_world.close()
    # The simulator's ground truth stands in for the user's clicks (--names ... opens a window instead):
    # the rim and handle, and the centre of the opening (seen from above; the base is hidden).
    points = [f"{k}={visible[k][0][0]:.1f},{visible[k][0][1]:.1f}" for k in ("rim", "handle", "opening")]
    spec_path = out / "spec" / "spec.yaml"
    spec_path.unlink(missing_ok=True)
    args = ["--image", str(out / "frame.png"), "--category", "mug", "--out", str(spec_path)]
    print("   python -m kil_perception.annotate " + " ".join(args + [f"--point {p}" for p in points]))
    annotate.main(args + [arg for p in points for arg in ("--point", p)])
    spec = load_spec(spec_path)
    matcher = ImageMatcher(spec, make_backend("effnet_lite0"))
    world = evaluation_configurations("place_mug", "in_distribution", 3)[2].make_world()
    world.step(0.3)
    frame = world.render()
    rgb = frame.rgb
    found = matcher.extract(rgb)
    truth = visible_keypoints(world, "mug", frame)
    world.close()
    names = spec.categories[0].keypoint_names
    for i, name in enumerate(names):
        uv, visible = truth[name]
        error = np.linalg.norm(found.uv[i] - uv)
        print(
            f"   mug.{name:8s} found at ({found.uv[i, 0]:.0f}, {found.uv[i, 1]:.0f}), "
            f"{error:.1f} px from the ground truth{'' if visible else ' (occluded)'}"
        )
    overlay = draw_keypoints(rgb, found.uv, names, ["mug"] * len(names))
    cv2.imwrite(str(out / "mug_keypoints.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    print(f"   overlay: {out / 'mug_keypoints.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
