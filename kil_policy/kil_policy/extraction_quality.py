"""How well keypoints were extracted from a set of bags, per keypoint of the spec, before any
training: so that a bad spec is seen as such, not found out as a bad policy 15 minutes later.

Per keypoint slot (category, instance, name):
- valid: fraction of frames where it was found and lifted to 3-D;
- median score: its matching score (cosine similarity) over the frames;
- rejected: fraction of frames where a score below ``min_score`` made it invalid;
- pixel error (median, px) against the simulator's ground truth where the bags carry it
  (``/kil/keypoints/oracle``, recorded by ``kil_eval.record_demos``; matched by category and name);
- 3-D error (median, mm) of the lifted point against the ground truth's, over the frames where it
  is valid: what the policy sees (a keypoint found on the right pixel but lifted from the depth of
  whatever is behind it — an outline, a thin neck — is off here and not in pixels);
- jumps: fraction of consecutive frame pairs where its 3-D point moved more than ``jump_m`` while
  its object rested (the ground truth moved less than ``rest_m``; needs the ground truth) — a
  keypoint that hops between the object and something else;
- once moved: pixel error (median, px) over the frames where its true 3-D point is more than
  ``move_m`` from where it was in the episode's first ground-truth frame, and the share of such
  frames — a grasped, carried object's keypoints, which the all-frames median hides when the
  object rests for most of the episode (matching can hold a resting object and lose a turned,
  held one).

:func:`flags` names the keypoints that are mostly invalid, jump, or are off the ground truth;
``kil_policy.train`` prints the table and the flags before it trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kil_interfaces.data import KeypointArrayData

#: A keypoint found on fewer frames than this is flagged.
MIN_VALID = 0.5
#: A keypoint jumping on more resting frame pairs than this is flagged.
MAX_JUMPS = 0.1
#: A keypoint whose median pixel error exceeds this fraction of the image width is flagged.
MAX_ERROR_FRACTION = 0.05
#: A keypoint's true point this far (m) from where it started counts as moved (its object grasped).
MOVE_M = 0.01


@dataclass
class KeypointQuality:
    """One keypoint slot's extraction quality over all frames (see the module docstring)."""

    category: str
    instance: int
    name: str
    frames: int
    valid: float
    median_score: float
    rejected: float
    median_error_px: float | None = None
    jumps: float | None = None
    median_error_mm: float | None = None
    median_error_moved_px: float | None = None
    moved: float | None = None

    @property
    def label(self) -> str:
        return f"{self.category}[{self.instance}].{self.name}"


def _truth_index(truth: KeypointArrayData) -> dict[tuple[str, str], int]:
    """(category, name) -> slot of the first instance of that keypoint in a ground-truth message."""
    index: dict[tuple[str, str], int] = {}
    for k, (category, name) in enumerate(zip(truth.categories, truth.names, strict=True)):
        index.setdefault((category, name), k)
    return index


def measure(
    episodes: list[list[KeypointArrayData]],
    min_score: float = 0.0,
    truths: list[list[KeypointArrayData]] | None = None,
    jump_m: float = 0.03,
    rest_m: float = 0.002,
    move_m: float = MOVE_M,
) -> list[KeypointQuality]:
    """The quality table of the extracted frames of every episode (one list of frames per bag),
    with each bag's ground-truth frames (matched by stamp; None or empty lists: no ground truth).
    Pixel errors, jumps and the once-moved error are for single-instance categories only (instance 0)."""
    frames = [f for episode in episodes for f in episode]
    if not frames:
        return []
    first = frames[0]
    scores = np.stack([f.scores for f in frames])
    valid = np.stack([f.valid for f in frames])
    k = first.num_keypoints
    errors: list[list[float]] = [[] for _ in range(k)]
    errors_mm: list[list[float]] = [[] for _ in range(k)]
    errors_moved: list[list[float]] = [[] for _ in range(k)]
    jumps = np.zeros(k)
    resting = np.zeros(k)
    have_truth = False
    for e, episode in enumerate(episodes):
        truth = (truths or [])[e] if truths and e < len(truths) else []
        if not truth or not episode:
            continue
        have_truth = True
        stamps = np.array([t.stamp_ns for t in truth], np.int64)
        index = _truth_index(truth[0])
        start = truth[0]
        previous = None
        for frame in episode:
            i = int(np.argmin(np.abs(stamps - frame.stamp_ns)))
            current = truth[i]
            for slot in range(k):
                source = index.get((frame.categories[slot], frame.names[slot]))
                if source is None or frame.instances[slot] != 0:
                    continue
                error = float(np.linalg.norm(frame.uv[slot] - current.uv[source]))
                errors[slot].append(error)
                if np.linalg.norm(current.points[source] - start.points[source]) > move_m:
                    errors_moved[slot].append(error)
                if frame.valid[slot]:
                    errors_mm[slot].append(1000.0 * float(np.linalg.norm(frame.points[slot] - current.points[source])))
                if previous is not None:
                    before_frame, before_truth = previous
                    still = np.linalg.norm(current.points[source] - before_truth.points[source]) < rest_m
                    both = frame.valid[slot] and before_frame.valid[slot]
                    if still and both:
                        resting[slot] += 1
                        jumps[slot] += np.linalg.norm(frame.points[slot] - before_frame.points[slot]) > jump_m
            previous = (frame, current)
    table = []
    for slot in range(k):
        table.append(
            KeypointQuality(
                category=first.categories[slot],
                instance=int(first.instances[slot]),
                name=first.names[slot],
                frames=len(frames),
                valid=float(valid[:, slot].mean()),
                median_score=float(np.median(scores[:, slot])),
                rejected=float(((scores[:, slot] < min_score) & ~valid[:, slot]).mean()) if min_score > 0 else 0.0,
                median_error_px=float(np.median(errors[slot])) if have_truth and errors[slot] else None,
                jumps=float(jumps[slot] / resting[slot]) if have_truth and resting[slot] else None,
                median_error_mm=float(np.median(errors_mm[slot])) if have_truth and errors_mm[slot] else None,
                median_error_moved_px=float(np.median(errors_moved[slot])) if errors_moved[slot] else None,
                moved=len(errors_moved[slot]) / len(errors[slot]) if have_truth and errors[slot] else None,
            )
        )
    return table


def flags(table: list[KeypointQuality], image_width: int | None = None) -> list[str]:
    """One line per keypoint that looks wrong: mostly invalid, jumping while its object rests, or
    (with ``image_width``) more than 5 % of the width off the ground truth, over all frames or over
    those where it has moved from where it started."""
    out = []
    for row in table:
        if row.valid < MIN_VALID:
            out.append(f"{row.label} is valid on only {100 * row.valid:.0f} % of the frames")
        if row.jumps is not None and row.jumps > MAX_JUMPS:
            out.append(f"{row.label} jumps on {100 * row.jumps:.0f} % of the frame pairs where its object rests")
        limit = MAX_ERROR_FRACTION * image_width if image_width else None
        moved = row.median_error_moved_px if row.moved is not None else None
        if limit and row.median_error_px is not None and row.median_error_px > limit:
            extra = (
                f" ({moved:.0f} px once it has moved from where it started, {100 * row.moved:.0f} % of the frames)"
                if moved is not None
                else ""
            )
            out.append(f"{row.label} is {row.median_error_px:.0f} px from the ground truth in the median{extra}")
        elif limit and moved is not None and moved > limit:
            out.append(
                f"{row.label} is {moved:.0f} px from the ground truth in the median once it has moved from where it "
                f"started ({100 * row.moved:.0f} % of the frames): lost when its object is grasped or carried "
                "(tracking or instance matching may keep it)"
            )
    return out


def format_table(table: list[KeypointQuality]) -> str:
    """The table as aligned text lines."""
    head = (
        f"{'keypoint':28s} {'valid':>6s} {'score':>6s} {'rejected':>9s} {'error px':>9s} {'3-D mm':>7s} {'jumps':>6s}"
        f" {'moved px':>13s}"
    )
    lines = [head]
    for row in table:
        error = "–" if row.median_error_px is None else f"{row.median_error_px:.1f}"
        error_mm = "–" if row.median_error_mm is None else f"{row.median_error_mm:.0f}"
        jumps = "–" if row.jumps is None else f"{100 * row.jumps:.0f} %"
        moved = (
            "–"
            if row.median_error_moved_px is None or row.moved is None
            else f"{row.median_error_moved_px:.1f} ({100 * row.moved:.0f} %)"
        )
        lines.append(
            f"{row.label:28s} {100 * row.valid:5.0f}% {row.median_score:6.2f} {100 * row.rejected:8.0f}% "
            f"{error:>9s} {error_mm:>7s} {jumps:>6s} {moved:>13s}"
        )
    return "\n".join(lines)


def assess(
    bags: list, extraction, truth_topic: str = "/kil/keypoints/oracle", episodes: list | None = None
) -> tuple[list[KeypointQuality], list[str]]:
    """The quality table and flags of the keypoints extracted from ``bags`` with ``extraction``
    (``keypoint_cache.ExtractionConfig``; ``episodes``: their frames if already at hand, else the
    cached frames are read, nothing is extracted twice), scored against the ground truth on
    ``truth_topic`` where the bags carry it."""
    from kil_perception.spec import load_spec
    from kil_policy.keypoint_cache import bag_keypoints, extract_bag_keypoints

    if episodes is None:
        episodes = [extract_bag_keypoints(bag, extraction) for bag in bags]
    truths = [bag_keypoints(bag, truth_topic) for bag in bags]
    table = measure(episodes, extraction.min_score, truths)
    spec = load_spec(extraction.spec)
    width = spec.categories[0].references[0].image().shape[1]
    return table, flags(table, width)


def report(bags: list[str], extraction, truth_topic: str = "/kil/keypoints/oracle") -> tuple[str, list[str]]:
    """:func:`assess` as the text table and the flags."""
    table, flagged = assess(bags, extraction, truth_topic)
    return format_table(table), flagged
