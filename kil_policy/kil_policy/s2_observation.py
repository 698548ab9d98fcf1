"""S2's observation (paper §IV-C; S2-diffusion, RA-L 2025): no colour, a segmentation mask of the
task's objects and a relative, normalised depth image, as two image channels.

S2 takes its mask from text-prompted segmentation (Grounded-SAM2) and its depth from a relative
monocular depth model (Depth Anything V2, whose output is affine-invariant inverse depth). Here
the mask comes from the instance path (the simulator's instance masks, or SAM3 where its weights
exist, prompted with the task's object categories) and the depth from the RGB-D sensor, turned
into the same kind of relative image: inverse depth, min-max normalised per frame over the pixels
with a return, so it carries the scene's shape and not its metric scale.
One implementation, used by training (frames from bags), the simulator's evaluation and
``policy_node``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Channel order of an S2 frame.
S2_CHANNELS = ("mask", "relative_depth")


def relative_depth(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) depth in metres (0 or non-finite: no return) -> (H, W) float32 in [0, 1]: inverse
    depth min-max normalised over the pixels with a return (1 = nearest), 0 where there is none.
    A frame whose returns all lie at one depth gives 1 on them."""
    depth = np.asarray(depth_m, np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape, np.float32)
    if not valid.any():
        return out
    inverse = 1.0 / depth[valid]
    low, high = inverse.min(), inverse.max()
    out[valid] = 1.0 if high - low < 1e-12 else (inverse - low) / (high - low)
    return out


def task_mask(index_map: np.ndarray, categories: dict[int, str], wanted: Iterable[str]) -> np.ndarray:
    """(H, W) bool: pixels of any object whose category is in ``wanted``.

    Args:
        index_map: (H, W) integer instance values (0 = background).
        categories: instance value -> category (``kil_perception.instances.parse_mask_categories``).
        wanted: the task's object categories (S2's text prompts).
    """
    wanted = set(wanted)
    values = [value for value, category in categories.items() if category in wanted]
    return np.isin(np.asarray(index_map), values)


def s2_frame(mask: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """(H, W) bool mask + (H, W) depth (m) -> (H, W, 2) uint8 S2 frame: channel 0 the mask (0 or
    255), channel 1 the relative depth scaled to 0..255 (:func:`relative_depth`)."""
    mask = np.asarray(mask)
    if mask.shape != np.shape(depth_m):
        raise ValueError(f"mask {mask.shape} and depth {np.shape(depth_m)} differ in size")
    depth = np.rint(relative_depth(depth_m) * 255.0).astype(np.uint8)
    return np.stack([np.where(mask.astype(bool), 255, 0).astype(np.uint8), depth], axis=-1)
