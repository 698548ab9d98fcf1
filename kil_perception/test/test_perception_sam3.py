"""SAM3 instance source with a tiny randomly initialised Sam3Model built from its config: masks at
image size, one vision pass per image, prompts matter, local-folder loading, instance matching
through it, and the error when the gated weights are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from perception_tiny_models import tiny_sam3

from kil_perception.backends import WeightsUnavailableError, make_backend
from kil_perception.instances import InstanceMatcher, Sam3Instances
from kil_perception.spec import load_spec

IMAGE = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)


def test_instances_cover_the_image_with_scores(tmp_path: Path) -> None:
    source = Sam3Instances(model=tiny_sam3(tmp_path))
    instances = source(IMAGE, "box", "paper box")
    assert len(instances) == 10  # every query (the matcher applies the confidence threshold)
    for instance in instances:
        assert instance.mask.shape == (120, 160) and instance.mask.dtype == bool
        assert 0.0 <= instance.score <= 1.0
    again = source(IMAGE.copy(), "box", "paper box")  # a new array: encoded again, same result
    assert [i.score for i in again] == pytest.approx([i.score for i in instances], abs=1e-6)
    other = source(IMAGE, "mug", "mug")
    assert not np.allclose([i.score for i in other], [i.score for i in instances])


def test_vision_encoder_runs_once_per_image(tmp_path: Path) -> None:
    model, processor = tiny_sam3(tmp_path)
    calls = []
    model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    source = Sam3Instances(model=(model, processor))
    for prompt in ("mug", "paper box", "shoe"):
        source(IMAGE, prompt, prompt)
    assert len(calls) == 1
    source(np.ascontiguousarray(IMAGE[::-1]), "mug", "mug")
    assert len(calls) == 2


def test_the_input_is_resized_on_the_device_as_the_processor_does(tmp_path: Path) -> None:
    """Sam3Instances.pixels (resize + normalise with torch on the model's device) equals the image
    processor's pixel_values to within one grey level, and the instances found from it match those
    found from the processor's input."""
    import torch

    model, processor = tiny_sam3(tmp_path)
    source = Sam3Instances(model=(model, processor))
    expected = processor(images=IMAGE, return_tensors="pt")["pixel_values"]
    got = source.pixels(IMAGE)
    assert got.shape == expected.shape and (got - expected).abs().max() < 2 / 255 / 0.5
    with torch.inference_mode():
        ours = model.get_vision_features(pixel_values=got)
        theirs = model.get_vision_features(pixel_values=expected)
    a, b = ours.fpn_hidden_states[-1], theirs.fpn_hidden_states[-1]
    assert (a - b).abs().max() < 0.05 * b.abs().max()


def test_local_folder_round_trip(tmp_path: Path) -> None:
    model, processor = tiny_sam3(tmp_path)
    model.save_pretrained(tmp_path / "sam3")
    processor.save_pretrained(tmp_path / "sam3")
    loaded = Sam3Instances(model=str(tmp_path / "sam3"))(IMAGE, "mug", "mug")
    direct = Sam3Instances(model=(model, processor))(IMAGE, "mug", "mug")
    assert [i.score for i in loaded] == pytest.approx([i.score for i in direct], abs=1e-5)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(loaded, direct, strict=True))


def test_instance_matching_with_sam3_keeps_the_keypoint_count(tmp_path: Path, spec_file: Path) -> None:
    spec = load_spec(spec_file)
    source = Sam3Instances(model=tiny_sam3(tmp_path))
    found = InstanceMatcher(spec, make_backend("classic"), source, threshold=0.0).extract(IMAGE)
    assert found.uv.shape == (spec.num_keypoints, 2) and found.found.any()
    nothing = InstanceMatcher(spec, make_backend("classic"), source, threshold=1.01).extract(IMAGE)
    assert nothing.uv.shape == (spec.num_keypoints, 2) and not nothing.found.any()


def test_absent_weights_name_the_gated_model(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"'facebook/sam3'.*gated.*instance_model:=/path/to/sam3"):
        Sam3Instances()


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A two-category spec on random reference images."""
    import cv2

    rng = np.random.default_rng(1)
    for name in ("mug", "box"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), (rng.random((120, 160, 3)) * 255).astype(np.uint8))
    (tmp_path / "spec.yaml").write_text(
        "categories:\n"
        "  - name: mug\n    prompt: mug\n    references:\n      - image: mug.png\n"
        "        keypoints: {rim: [40, 30], handle: [100, 60], base: [80, 100]}\n"
        "  - name: box\n    prompt: paper box\n    references:\n      - image: box.png\n"
        "        keypoints: {corner: [20, 20], center: [80, 60], edge: [150, 110]}\n"
    )
    return tmp_path / "spec.yaml"


def test_extract_cli_instance_method_with_a_local_sam3(tmp_path: Path, spec_file: Path, capsys) -> None:
    import json

    import cv2

    from kil_perception.extract import main

    model, processor = tiny_sam3(tmp_path)
    model.save_pretrained(tmp_path / "sam3")
    processor.save_pretrained(tmp_path / "sam3")
    cv2.imwrite(str(tmp_path / "frame.png"), IMAGE)
    args = ["--spec", str(spec_file), "--image", str(tmp_path / "frame.png"), "--backend", "classic", "--json"]
    args += ["--method", "instance", "--instance-model", str(tmp_path / "sam3"), "--instance-threshold", "0"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "instance" and len(report["keypoints"]) == 6
    with pytest.raises(SystemExit, match="instance_threshold must be in"):
        main([*args[:-1], "2"])
