"""Keypoint specification (paper §III-A): per object category, reference image(s) with 3-6 named
pixel keypoints, an instance prompt and the number of instances.

YAML, with image paths relative to the file::

    categories:
      - name: mug
        prompt: mug              # text prompt for instance matching (e.g. "paper box")
        instances: 1             # 1 or 2
        references:              # image matching with 2 instances needs a reference per instance
          - image: mug_reference.png
            keypoints: {rim: [312, 240], handle: [351, 262], base: [300, 301]}

The keypoint order of every ``KeypointArray`` is: categories in file order, then instances, then
keypoints in reference order.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from kil_interfaces.calibration import read_yaml_mapping
from kil_interfaces.keypoint_layout import spec_layout
from kil_perception.images import read_rgb

MIN_KEYPOINTS, MAX_KEYPOINTS = 3, 6


class SpecError(ValueError):
    """A spec file is invalid; the message names the file and field."""


@dataclass(frozen=True)
class Reference:
    """A reference image and its keypoints (name -> (u, v) pixel)."""

    image_path: Path
    keypoints: dict[str, tuple[float, float]]

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        try:
            return read_rgb(self.image_path, "reference image")
        except ValueError as error:
            raise SpecError(str(error)) from None


@dataclass(frozen=True)
class Category:
    name: str
    prompt: str
    instances: int
    references: tuple[Reference, ...]

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return tuple(self.references[0].keypoints)


@dataclass(frozen=True)
class KeypointSpec:
    path: Path | None
    categories: tuple[Category, ...]

    @property
    def num_keypoints(self) -> int:
        """K: keypoints per frame, all instances included."""
        return sum(c.instances * len(c.keypoint_names) for c in self.categories)

    def layout(self) -> list[tuple[str, int, str]]:
        """(category, instance, keypoint name) for each of the K slots, in message order."""
        return list(spec_layout((c.name, c.instances, c.keypoint_names) for c in self.categories))

    def to_yaml(self) -> str:
        base = self.path.parent if self.path else Path(".")
        content = {
            "categories": [
                {
                    "name": c.name,
                    "prompt": c.prompt,
                    "instances": c.instances,
                    "references": [
                        {
                            "image": str(_relative(r.image_path, base)),
                            "keypoints": {
                                k: [round(float(u), 1), round(float(v), 1)] for k, (u, v) in r.keypoints.items()
                            },
                        }
                        for r in c.references
                    ],
                }
                for c in self.categories
            ]
        }
        return yaml.safe_dump(content, sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    def copy_to(self, directory: str | Path) -> Path:
        """A self-contained copy: ``directory/spec.yaml`` and every reference image beside it
        (names kept, made unique); returns the new spec file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        categories = []
        for category in self.categories:
            references = []
            for reference in category.references:
                name = reference.image_path.name
                while name in used:
                    name = f"{category.name}_{name}"
                used.add(name)
                shutil.copyfile(reference.image_path, directory / name)
                references.append(Reference(directory / name, dict(reference.keypoints)))
            categories.append(Category(category.name, category.prompt, category.instances, tuple(references)))
        path = directory / "spec.yaml"
        KeypointSpec(path, tuple(categories)).save(path)
        return path


def _relative(path: Path, base: Path) -> Path:
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return path


def load_spec(path: str | Path) -> KeypointSpec:
    """Read and validate a spec file.

    Raises:
        SpecError: naming the file and the field (``categories[0].references[1].keypoints.rim``).
    """
    path = Path(path)
    content = read_yaml_mapping(path, "spec file", SpecError)
    if not isinstance(content.get("categories"), list) or not content["categories"]:
        raise SpecError(f"{path}: expected a non-empty list 'categories'")
    categories = []
    names = set()
    for i, raw in enumerate(content["categories"]):
        where = f"{path}: categories[{i}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: expected a mapping")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}.name: a non-empty string is required")
        if name in names:
            raise SpecError(f"{where}.name: category {name!r} appears twice")
        names.add(name)
        instances = raw.get("instances", 1)
        if instances not in (1, 2):
            raise SpecError(f"{where}.instances: must be 1 or 2, got {instances!r}")
        prompt = raw.get("prompt", name)
        if not isinstance(prompt, str) or not prompt:
            raise SpecError(f"{where}.prompt: a non-empty string is required")
        refs = raw.get("references")
        if not isinstance(refs, list) or not refs:
            raise SpecError(f"{where}.references: at least one reference image is required")
        if len(refs) > instances:
            raise SpecError(f"{where}.references: {len(refs)} references for {instances} instance(s)")
        references = tuple(_reference(r, f"{where}.references[{j}]", path.parent) for j, r in enumerate(refs))
        first = tuple(references[0].keypoints)
        for j, ref in enumerate(references[1:], 1):
            if tuple(ref.keypoints) != first:
                raise SpecError(
                    f"{where}.references[{j}].keypoints: names {list(ref.keypoints)} differ from {list(first)}"
                )
        categories.append(Category(name, prompt, instances, references))
    return KeypointSpec(path, tuple(categories))


def _reference(raw, where: str, base: Path) -> Reference:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with image and keypoints")
    image = raw.get("image")
    if not isinstance(image, str):
        raise SpecError(f"{where}.image: a path is required")
    image_path = (base / image) if not Path(image).is_absolute() else Path(image)
    if not image_path.is_file():
        raise SpecError(f"{where}.image: {image_path} not found")
    shape = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if shape is None:
        raise SpecError(f"{where}.image: {image_path} is not a readable image")
    height, width = shape.shape[:2]
    keypoints = raw.get("keypoints")
    if not isinstance(keypoints, dict):
        raise SpecError(f"{where}.keypoints: a mapping name -> [u, v] is required")
    if not MIN_KEYPOINTS <= len(keypoints) <= MAX_KEYPOINTS:
        raise SpecError(f"{where}.keypoints: {len(keypoints)} keypoints; {MIN_KEYPOINTS}-{MAX_KEYPOINTS} are required")
    parsed = {}
    for name, uv in keypoints.items():
        if not (isinstance(uv, list | tuple) and len(uv) == 2 and all(isinstance(x, int | float) for x in uv)):
            raise SpecError(f"{where}.keypoints.{name}: expected [u, v] pixels, got {uv!r}")
        u, v = float(uv[0]), float(uv[1])
        if not (0 <= u <= width - 1 and 0 <= v <= height - 1):
            raise SpecError(f"{where}.keypoints.{name}: ({u}, {v}) is outside the {width}x{height} image")
        parsed[str(name)] = (u, v)
    return Reference(image_path, parsed)
