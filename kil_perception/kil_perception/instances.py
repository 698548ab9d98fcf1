"""Instance matching (IN, paper §III-B, §IV-I): an instance source gives masks per category prompt;
the top instances above a confidence threshold are kept, in a stable order, and each category's
keypoints are matched inside each instance's mask. Missing instances are padded with
``found=False`` so the keypoint count stays fixed.

Instance sources share one call: ``source(image, category, prompt) -> [Instance]``. Here:
``SimulatorMasks`` (the simulator's segmentation, weights-free). SAM3 is not wrapped yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kil_perception.backends import FeatureBackend
from kil_perception.extraction import Extraction2D
from kil_perception.matching import descriptors_at, match_keypoints
from kil_perception.spec import KeypointSpec


@dataclass
class Instance:
    """One detected object: a (H, W) bool mask and a confidence in [0, 1]."""

    mask: np.ndarray
    score: float


InstanceSource = Callable[[np.ndarray, str, str], list[Instance]]


class SimulatorMasks:
    """Instance masks from a simulator render: ``masks_for(category)`` per frame.

    Args:
        frame_masks: () -> ((H, W) int object-index map, {object index + 1: category}) for the
            current frame.
    """

    def __init__(self, frame_masks: Callable[[], tuple[np.ndarray, dict[int, str]]]) -> None:
        self.frame_masks = frame_masks

    def __call__(self, image: np.ndarray, category: str, prompt: str) -> list[Instance]:
        index_map, categories = self.frame_masks()
        return [Instance(index_map == value, 1.0) for value, name in sorted(categories.items()) if name == category]


class InstanceMatcher:
    """Keypoints matched inside instance masks.

    Args:
        spec: keypoint spec (its first reference per category gives the descriptors).
        backend: feature backend.
        source: the instance source.
        threshold: minimum instance confidence.
    """

    method = "instance"

    def __init__(self, spec: KeypointSpec, backend: FeatureBackend, source: InstanceSource, threshold: float = 0.3):
        self.spec = spec
        self.backend = backend
        self.source = source
        self.threshold = threshold
        self.queries = []
        for category in spec.categories:
            reference = category.references[0]
            image = reference.image()
            features = backend.features(image)
            uv = torch.tensor(list(reference.keypoints.values()), dtype=torch.float32, device=features.device)
            self.queries.append(descriptors_at(features, uv, image.shape[:2]))

    def extract(self, image: np.ndarray) -> Extraction2D:
        features = self.backend.features(image)
        size = image.shape[:2]
        uv, scores, found, sims = [], [], [], []
        for category, queries in zip(self.spec.categories, self.queries, strict=True):
            k = len(queries)
            kept = [i for i in self.source(image, category.name, category.prompt) if i.score >= self.threshold]
            kept = sorted(kept, key=lambda i: -i.score)[: category.instances]
            # A stable order for the policy: the instance nearest the camera (lowest in the image) first.
            kept.sort(key=lambda i: -np.nonzero(i.mask)[0].mean() if i.mask.any() else 0.0)
            for slot in range(category.instances):
                if slot < len(kept) and kept[slot].mask.any():
                    masks = torch.from_numpy(kept[slot].mask).to(features.device)[None].expand(k, *size)
                    result = match_keypoints(features, queries, size, masks)
                    uv.append(result.uv.cpu().numpy())
                    scores.append(result.scores.cpu().numpy())
                    found.append(result.found.cpu().numpy())
                    sims.append(result.similarities.cpu().numpy())
                else:  # missing instance: padded, never a made-up point
                    uv.append(np.zeros((k, 2)))
                    scores.append(np.zeros(k, np.float32))
                    found.append(np.zeros(k, bool))
                    sims.append(np.zeros((k, k), np.float32))
        return Extraction2D(np.concatenate(uv), np.concatenate(scores), np.concatenate(found), _block_diag(sims))


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    """Similarities of each slot to its own category's references (K x K, zero across categories)."""
    total = sum(b.shape[0] for b in blocks)
    out = np.zeros((total, total), np.float32)
    start = 0
    for block in blocks:
        n = block.shape[0]
        out[start : start + n, start : start + n] = block
        start += n
    return out
