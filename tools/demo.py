"""`make demo`: the end-to-end slices that exist so far.

The full rollout loop (camera -> keypoint_node -> policy_node -> interpolator_node -> arm) lands
with the end-to-end issue. Until then this runs, on the MuJoCo simulation:
  1. every task's scripted expert through the real control path (10 Hz chunks ->
     kil_policy.interpolation -> simulated arm), one evaluation configuration each;
  2. recording demonstrations as rosbag2 episodes (python -m kil_sim.record_demos);
  3. reading an episode back from its bag and drawing a contact sheet of its camera frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rosbags.rosbag2 import Reader

from kil_interfaces import conversion
from kil_interfaces.typestore import kil_typestore
from kil_sim.record_demos import record
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import TASKS, evaluation_configurations


def contact_sheet(bag: Path, out: Path, frames: int = 12) -> None:
    typestore = kil_typestore()
    images = []
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == "/camera/color/image_raw"]
        for connection, stamp, raw in reader.messages(connections=connections):
            images.append((stamp, conversion.image_to_numpy(typestore.deserialize_cdr(raw, connection.msgtype))))
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
    print("== KIL demo: the full rollout loop is not implemented yet; running the slices that exist.\n")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
