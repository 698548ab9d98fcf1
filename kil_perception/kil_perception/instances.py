"""Instance matching (IN, paper §III-B, §IV-I): an instance source gives masks per category prompt;
the top instances above a confidence threshold are kept, in a stable order, and each category's
keypoints are matched inside each instance's mask. Missing instances are padded with
``found=False`` so the keypoint count stays fixed.

Instance sources share one call: ``source(image, category, prompt) -> [Instance]`` (and may
offer ``prepare(image, prompts)``, called first with all of a frame's prompts, to batch them):
``Sam3Instances`` (SAM3 through transformers, text-prompted) and ``SimulatorMasks`` (the
simulator's segmentation, weights-free; also what a 16UC1 instance-mask topic gives).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from kil_perception.backends import FeatureBackend, WeightsUnavailableError
from kil_perception.cuda_graph import GraphedCall
from kil_perception.extraction import Extraction2D
from kil_perception.matching import descriptors_at, match_keypoints
from kil_perception.spec import KeypointSpec


class Instance:
    """One detected object: a confidence in [0, 1] and its (H, W) bool mask.

    The mask may be given as a numpy array, as a tensor (kept on its device, so a GPU source and
    the matcher never copy it through the host), or as a zero-argument callable that makes that
    tensor on first use: SAM3 gives up to 200 candidates per prompt and the matcher keeps a few,
    so only the kept ones are ever upsampled to the image size.

    Args:
        mask: (H, W) bool array or tensor, or a callable returning the tensor.
        score: the source's confidence.
    """

    def __init__(self, mask: np.ndarray | torch.Tensor | Callable[[], torch.Tensor], score: float) -> None:
        self.score = float(score)
        self._source = mask
        self._tensor: torch.Tensor | None = None
        self._array: np.ndarray | None = None
        if isinstance(mask, np.ndarray):
            self._array = mask.astype(bool, copy=False)
        elif isinstance(mask, torch.Tensor):
            self._tensor = mask.bool()
        elif not callable(mask):
            raise TypeError(f"Instance mask must be an array, a tensor or a callable, not {type(mask).__name__}")

    def tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(H, W) bool mask as a tensor on ``device`` (None: where it was made)."""
        if self._tensor is None:
            if self._array is not None:
                self._tensor = torch.from_numpy(self._array)
            else:
                self._tensor = self._source().bool()
        return self._tensor if device is None else self._tensor.to(device)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool numpy mask (copied to the host on first use if the source made a tensor)."""
        if self._array is None:
            self._array = self.tensor().cpu().numpy()
        return self._array

    def __repr__(self) -> str:
        return f"Instance(score={self.score:.3f})"


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


SAM3_DEFAULT = "facebook/sam3"


class Sam3Instances:
    """Text-prompted instance masks from SAM3 (transformers ``Sam3Model`` + ``Sam3Processor``).

    The vision encoder runs once per image (its output is reused for every category prompt of
    the same image array); the text encoder runs once per prompt (its output is kept); and
    :meth:`prepare` runs all of a frame's prompts through the detector in one batched pass (the
    instance matcher calls it), so a two-category spec costs one decoder call, not two.

    Args:
        device: torch device (bf16 on CUDA, fp32 on CPU).
        model: hub id or local folder (None = ``facebook/sam3``, gated: accept its licence on the
            hub and download it), or a ``(Sam3Model, Sam3Processor)`` pair.
        mask_threshold: logit-probability threshold that binarises each mask.
        cuda_graphs: on CUDA, replay the vision encoder from a CUDA graph (captured on the first
            frame; eager with a warning if it cannot be captured).
    """

    def __init__(self, device="cpu", model=None, mask_threshold: float = 0.5, cuda_graphs: bool = True) -> None:
        if model is None or isinstance(model, str):
            model = _load_sam3(model or SAM3_DEFAULT)
        network, self.processor = model
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = network.to(self.device).eval()
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        self.mask_threshold = mask_threshold
        self._encoder = GraphedCall(
            lambda pixels: self.model.get_vision_features(pixel_values=pixels), "SAM3 vision encoder", cuda_graphs
        )
        self._image: np.ndarray | None = None
        self._vision = None
        self._prompts: dict[str, dict] = {}
        self._detections: dict[str, tuple] = {}  # this frame's (logits, presence, masks) per prompt

    @torch.inference_mode()
    def _vision_embeds(self, image: np.ndarray):
        if image is not self._image:  # (the array is kept, so its identity cannot be reused)
            self._vision = self._encoder(self.pixels(image))  # (on CUDA: valid until the next frame's replay)
            self._image = image
            self._detections = {}
        return self._vision

    @torch.inference_mode()
    def prepare(self, image: np.ndarray, prompts: list[str]) -> None:
        """Detect every prompt of this frame in one batched pass (the frame's vision features
        expanded to the prompts, their text stacked); :meth:`__call__` then reads the results."""
        vision = self._vision_embeds(image)
        pending = [p for p in dict.fromkeys(prompts) if p not in self._detections]
        texts = [self._text(p) for p in pending]
        if len(pending) < 2 or len({t["attention_mask"].shape for t in texts}) > 1:
            return  # nothing to batch (or prompts of different lengths: one by one)
        n = len(pending)
        expanded = type(vision)(**{key: _expand(value, n) for key, value in vision.items()})
        outputs = self.model(
            vision_embeds=expanded,
            text_embeds=_TextEmbeds(torch.cat([t["text_embeds"].pooler_output for t in texts])),
            attention_mask=torch.cat([t["attention_mask"] for t in texts]),
        )
        for i, prompt in enumerate(pending):
            presence = None if outputs.presence_logits is None else outputs.presence_logits[i]
            self._detections[prompt] = (outputs.pred_logits[i], presence, outputs.pred_masks[i])

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        """(1, 3, H, W) model input for an (h, w, 3) uint8 RGB image, resized and normalised on the
        model's device (the upload is the uint8 image, not a host-resized float 1008x1008 copy) as
        the image processor does: bilinear with antialiasing, rescale, normalise. Processors
        configured otherwise (padding, shortest-edge sizes) run as they are."""
        ip = self.processor.image_processor
        simple = (
            getattr(ip, "do_resize", False)
            and getattr(ip.size, "height", None)
            and getattr(ip.size, "width", None)
            and int(getattr(ip, "resample", 2)) == 2  # bilinear
            and not getattr(ip, "do_pad", False)
        )
        if not simple:
            pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
            return pixels.to(self.device, self.dtype)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(ip.size.height, ip.size.width), mode="bilinear", align_corners=False, antialias=True)
        if ip.do_rescale:
            x = x * ip.rescale_factor
        if ip.do_normalize:
            mean = torch.tensor(ip.image_mean, device=self.device)[:, None, None]
            std = torch.tensor(ip.image_std, device=self.device)[:, None, None]
            x = (x - mean) / std
        return x.to(self.dtype)

    @torch.inference_mode()
    def _text(self, prompt: str) -> dict:
        """The model's text inputs for ``prompt``: its encoded text (``text_embeds``, computed once
        per prompt: a spec's prompts do not change between frames) and attention mask."""
        if prompt not in self._prompts:
            tokens = self.processor(text=prompt, return_tensors="pt")
            ids, mask = (tokens[k].to(self.device) for k in ("input_ids", "attention_mask"))
            embeds = self.model.get_text_features(input_ids=ids, attention_mask=mask, return_dict=True)
            self._prompts[prompt] = {"text_embeds": embeds, "attention_mask": mask}
        return self._prompts[prompt]

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, category: str, prompt: str) -> list[Instance]:
        """Every instance SAM3 finds for ``prompt`` (the matcher applies its own threshold)."""
        vision = self._vision_embeds(image)
        prompt = prompt or category
        if prompt not in self._detections:
            outputs = self.model(vision_embeds=vision, **self._text(prompt))
            presence = None if outputs.presence_logits is None else outputs.presence_logits[0]
            self._detections[prompt] = (outputs.pred_logits[0], presence, outputs.pred_masks[0])
        logits, presence, low_res = self._detections[prompt]  # (Q,), (1,) or None, (Q, h, w) mask logits
        scores = logits.float().sigmoid()  # as the processor's post-processing
        if presence is not None:
            scores = scores * presence.float().sigmoid()
        size = tuple(image.shape[:2])
        return [
            Instance(partial(self._upsample, low_res[q], size), score)
            for q, score in enumerate(scores.cpu().tolist())  # (the one host copy: Q scores)
        ]

    @torch.inference_mode()
    def _upsample(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(h, w) mask logits -> (H, W) bool on the model's device: sigmoid, bilinear upsampling,
        threshold, as ``post_process_instance_segmentation`` does (computed in float32)."""
        probability = logits.float().sigmoid()[None, None]
        upsampled = F.interpolate(probability, size=size, mode="bilinear", align_corners=False)[0, 0]
        return upsampled > self.mask_threshold


class _TextEmbeds:
    """Stacked prompt encodings in the form ``Sam3Model.forward`` reads (``text_embeds.pooler_output``)."""

    def __init__(self, pooler_output: torch.Tensor) -> None:
        self.pooler_output = pooler_output


def _expand(value, n: int):
    """A batch-1 tensor (or tuple of them) expanded to batch n without copying."""
    if isinstance(value, torch.Tensor):
        return value.expand(n, *value.shape[1:])
    if isinstance(value, (tuple, list)):
        return type(value)(_expand(v, n) for v in value)
    return value


def _load_sam3(model_id: str):
    from transformers import Sam3Model, Sam3Processor

    try:
        return Sam3Model.from_pretrained(model_id), Sam3Processor.from_pretrained(model_id)
    except (OSError, ValueError) as error:
        raise WeightsUnavailableError(
            f"SAM3 weights '{model_id}' are not available ({type(error).__name__}). They are gated: accept the "
            f"licence on huggingface.co/{model_id}, download them on a machine with internet "
            f"(huggingface-cli download {model_id}) and pass the local directory as the instance model parameter "
            f"(instance_model:=/path/to/{model_id.split('/')[-1]})"
        ) from None


def parse_mask_categories(text: str) -> dict[int, str]:
    """'1:mug,2:tray' -> {1: 'mug', 2: 'tray'}: instance mask values to spec categories
    (``keypoint_node``'s ``mask_categories``, a recorded bag's ``instance_categories``)."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, sep, category = item.partition(":")
        if not sep or not value.strip().isdigit() or not category.strip():
            raise ValueError(f"parameter mask_categories: {item!r} is not VALUE:category (e.g. '1:mug,2:tray')")
        mapping[int(value)] = category.strip()
    if not mapping:
        raise ValueError("instance_source 'masks' needs parameter mask_categories, e.g. '1:mug,2:tray'")
    return mapping


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

    def _prepare(self, image: np.ndarray) -> None:
        prepare = getattr(self.source, "prepare", None)  # (a source that batches a frame's prompts)
        if prepare is not None:
            prepare(image, [category.prompt or category.name for category in self.spec.categories])

    def _kept(self, image: np.ndarray, category) -> list[Instance]:
        """The category's instances above the threshold, most confident first, at most its count."""
        kept = [i for i in self.source(image, category.name, category.prompt) if i.score >= self.threshold]
        return sorted(kept, key=lambda i: -i.score)[: category.instances]

    def category_masks(self, image: np.ndarray) -> dict[str, np.ndarray | None]:
        """Per category, the union of the instances it would match in (H, W bool; None: none kept)."""
        self._prepare(image)
        masks: dict[str, np.ndarray | None] = {}
        for category in self.spec.categories:
            kept = self._kept(image, category)
            masks[category.name] = np.logical_or.reduce([i.mask for i in kept]) if kept else None
        return masks

    def extract(self, image: np.ndarray) -> Extraction2D:
        features = self.backend.features(image)
        size = image.shape[:2]
        self._prepare(image)
        uv, scores, found, sims = [], [], [], []
        for category, queries in zip(self.spec.categories, self.queries, strict=True):
            k = len(queries)
            kept = self._kept(image, category)
            # Only the kept instances' masks are made, on the features' device.
            masks = [instance.tensor(features.device) for instance in kept]
            for mask in masks:
                if tuple(mask.shape) != size:
                    raise ValueError(
                        f"instance source gave a {tuple(mask.shape)} mask for category {category.name!r}; "
                        f"the image is {size}"
                    )
            # A stable order for the policy: the instance nearest the camera (lowest in the image) first.
            masks.sort(key=lambda m: -_mean_row(m))
            for slot in range(category.instances):
                if slot < len(masks) and bool(masks[slot].any()):
                    result = match_keypoints(features, queries, size, masks[slot][None].expand(k, *size))
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


def _mean_row(mask: torch.Tensor) -> float:
    """Mean row index of a (H, W) bool mask's pixels (0 for an empty mask)."""
    per_row = mask.sum(dim=1, dtype=torch.float32)
    total = per_row.sum()
    if total == 0:
        return 0.0
    rows = torch.arange(mask.shape[0], device=mask.device, dtype=torch.float32)
    return float((per_row * rows).sum() / total)


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
