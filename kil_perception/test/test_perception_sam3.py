"""SAM3 instance source with a tiny randomly initialised Sam3Model built from its config: masks at
image size, one vision pass per image, prompts matter, local-folder loading, instance matching
through it, and the error when the gated weights are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from perception_tiny_models import tiny_sam3

from kil_perception.backends import WeightsUnavailableError, make_backend
from kil_perception.instances import Instance, InstanceMatcher, Sam3Instances
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


def test_a_frames_prompts_are_detected_in_one_batched_pass(tmp_path: Path, spec_file: Path) -> None:
    """prepare() (which the instance matcher calls) runs both categories' prompts through the
    detector once per frame, with the instances of one-by-one calls."""
    model, processor = tiny_sam3(tmp_path)
    decoder_calls = []
    model.detr_decoder.register_forward_hook(lambda *_: decoder_calls.append(1))
    batched, single = Sam3Instances(model=(model, processor)), Sam3Instances(model=(model, processor))
    frame = IMAGE.copy()
    batched.prepare(frame, ["mug", "paper box", "mug"])
    assert len(decoder_calls) == 1
    for prompt in ("mug", "paper box"):
        a, b = batched(frame, prompt, prompt), single(frame, prompt, prompt)
        assert [i.score for i in a] == pytest.approx([i.score for i in b], abs=1e-6)
        assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b, strict=True))
    assert len(decoder_calls) == 3  # the batched results were read, not recomputed (2 are the single ones)
    decoder_calls.clear()
    matcher = InstanceMatcher(load_spec(spec_file), make_backend("classic"), batched, threshold=0.0)
    for image in (IMAGE, IMAGE[::-1].copy()):
        matcher.extract(image)
    assert len(decoder_calls) == 2  # one per frame for the spec's two categories


def test_the_text_encoder_runs_once_per_prompt(tmp_path: Path) -> None:
    model, processor = tiny_sam3(tmp_path)
    calls = []
    model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    source = Sam3Instances(model=(model, processor))
    for image in (IMAGE, IMAGE.copy(), IMAGE[::-1].copy()):
        for prompt in ("mug", "paper box"):
            source(image, prompt, prompt)
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


def test_masks_and_scores_equal_the_processors_post_processing(tmp_path: Path) -> None:
    """The lazily upsampled masks are the processor's (sigmoid, bilinear to the image size,
    threshold), query by query, and so are the scores."""
    import torch

    model, processor = tiny_sam3(tmp_path)
    source = Sam3Instances(model=(model, processor), mask_threshold=0.5)
    instances = source(IMAGE, "box", "paper box")
    tokens = processor(text="paper box", return_tensors="pt")
    with torch.inference_mode():  # the uncached path: pixels and token ids through the whole model
        outputs = model(pixel_values=source.pixels(IMAGE), **tokens)
    expected = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, mask_threshold=0.5, target_sizes=[IMAGE.shape[:2]]
    )[0]
    assert [i.score for i in instances] == pytest.approx(expected["scores"].tolist(), abs=1e-6)
    for instance, mask in zip(instances, expected["masks"].bool(), strict=True):
        assert torch.equal(instance.tensor(), mask)
        assert np.array_equal(instance.mask, mask.numpy())
    assert any(i.mask.any() for i in instances) and not all(i.mask.all() for i in instances)


def test_only_the_kept_instances_masks_are_upsampled(tmp_path: Path, spec_file: Path, monkeypatch) -> None:
    """SAM3 gives every query; the matcher keeps one instance per category (the spec's count) and
    only those masks are made at image size."""
    source = Sam3Instances(model=tiny_sam3(tmp_path))
    upsampled = []
    original = source._upsample
    monkeypatch.setattr(source, "_upsample", lambda *a: upsampled.append(1) or original(*a))
    spec = load_spec(spec_file)
    InstanceMatcher(spec, make_backend("classic"), source, threshold=0.0).extract(IMAGE)
    assert len(upsampled) == sum(c.instances for c in spec.categories) == 2


def test_instance_masks_from_arrays_tensors_and_callables() -> None:
    import torch

    array = np.zeros((4, 5), bool)
    array[1, 2] = True
    made = []
    lazy = Instance(lambda: made.append(1) or torch.from_numpy(array), 0.5)
    assert made == []  # nothing made before use
    for instance in (Instance(array, 0.5), Instance(torch.from_numpy(array), 0.5), lazy):
        assert np.array_equal(instance.mask, array) and instance.mask.dtype == bool
        assert torch.equal(instance.tensor("cpu"), torch.from_numpy(array))
    assert made == [1]  # made once, then kept
    with pytest.raises(TypeError, match="Instance mask must be an array, a tensor or a callable, not list"):
        Instance([[True]], 0.5)


def test_a_mask_of_the_wrong_size_names_the_category(tmp_path: Path, spec_file: Path) -> None:
    def source(image, category, prompt):
        return [Instance(np.ones((60, 80), bool), 0.9)]

    matcher = InstanceMatcher(load_spec(spec_file), make_backend("classic"), source, threshold=0.0)
    with pytest.raises(ValueError, match=r"\(60, 80\) mask for category 'mug'; the image is \(120, 160\)"):
        matcher.extract(IMAGE)


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
