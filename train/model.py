"""MobileNetV2 for Food-11, the failure-scenario variants, and the model files.

Every model carries two plain attributes: `class_names` (output order) and `input_size`
(the square side in pixels it was trained at). `save_for_serving` writes `model.onnx`, what
the app serves, with both in its metadata, and `model.pth`, the PyTorch module that later
fine-tuning starts from (it unpickles where torch, torchvision and this file are importable).
"""

from __future__ import annotations

import json
import math
import socket
import tempfile
from pathlib import Path

import config
import torch
from torch import nn
from torch.nn.utils import skip_init
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from app.food11 import CLASS_NAMES, IMAGE_SIZE

FEATURES = 1280  # channels of MobileNetV2's last feature map
SLOW_CHANNELS = 32  # channels out of MobileNetV2's first block, where make_slow inserts
ONNX_FILE, TORCH_FILE, VERSIONS_FILE = "model.onnx", "model.pth", "versions.txt"
# Keys of the ONNX model's metadata_props that the app reads (see CONTRIBUTING.md).
META_CLASS_NAMES, META_INPUT_SIZE = "class_names", "input_size"
ONNX_OPSET = 17


class ExportError(RuntimeError):
    """The model could not be exported to ONNX."""


class BatchStandardize(nn.Module):
    """Standardise each feature with the mean and spread of the batch it is given.

    Batch normalisation that never keeps running statistics: sound over a batch of many
    images, but a batch of one image standardises every feature to 0.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - batch mean) / batch standard deviation, per feature."""
        centred = x - x.mean(0, keepdim=True)
        return centred / torch.sqrt((centred * centred).mean(0, keepdim=True) + self.eps)


def _backbone(pretrained: bool) -> nn.Module:
    """MobileNetV2 with ImageNet weights or random initialisation."""
    return mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None)


def resolve_weights(choice: str, timeout_s: float = 20.0) -> bool:
    """Decide pretrained or not: 'imagenet', 'none', or 'auto' (ImageNet if it downloads)."""
    if choice != "auto":
        return choice == "imagenet"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # an offline machine fails fast instead of hanging
    try:
        MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        return True
    except Exception as err:  # any download or cache failure means: train from scratch
        print(f"ImageNet weights unavailable ({type(err).__name__}); training from scratch")
        return False
    finally:
        socket.setdefaulttimeout(previous)


def _label(model: nn.Module, input_size: int) -> nn.Module:
    """Attach the attributes the app reads."""
    model.class_names = list(CLASS_NAMES)
    model.input_size = int(input_size)
    return model


def build_model(
    scenario: str = "normal", pretrained: bool = False, image_size: int = IMAGE_SIZE
) -> nn.Module:
    """Build the untrained model of a scenario (oversized and slow start as normal)."""
    if scenario not in config.SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {config.SCENARIOS}")
    net = _backbone(pretrained)
    head: list[nn.Module] = [nn.Dropout(0.2), nn.Linear(FEATURES, len(CLASS_NAMES))]
    if scenario == "bad-architecture":
        # Standardise the pooled features over the batch: fine in batched evaluation, but
        # the app classifies one photo at a time, and then every photo gets the same answer.
        head.insert(0, BatchStandardize())
    net.classifier = nn.Sequential(*head)
    return _label(net, image_size)


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def make_oversized(model: nn.Module, limit_bytes: int) -> nn.Module:
    """Widen the classifier with an exact identity layer until the model outweighs the limit.

    Linear(1280, W) copies its input into the first 1280 of W outputs (identity block, zeros
    elsewhere, no activation); Linear(W, 11) holds the original weights in its first 1280
    columns and zeros elsewhere. The logits stay the same; only the weight bytes grow.
    """
    old = model.classifier[-1]
    plain = [type(m) for m in model.classifier] == [nn.Dropout, nn.Linear]
    if not plain or old.in_features != FEATURES:
        raise ValueError("make_oversized needs the normal model's Linear(1280, 11) head")
    base = parameter_bytes(model) - sum(p.numel() * p.element_size() for p in old.parameters())
    per_unit = (FEATURES + 1 + old.out_features) * old.weight.element_size()
    target = math.ceil(limit_bytes * config.OVERSIZE_FACTOR)
    width = max(FEATURES, math.ceil((target - base - old.bias.numel() * 4) / per_unit))
    with torch.no_grad():
        # skip_init: no random initialisation of ~330M numbers that are zeroed right after
        widen = skip_init(nn.Linear, FEATURES, width)
        widen.weight.zero_()
        widen.weight[:FEATURES].copy_(torch.eye(FEATURES))
        widen.bias.zero_()
        narrow = skip_init(nn.Linear, width, old.out_features)
        narrow.weight.zero_()
        narrow.weight[:, :FEATURES].copy_(old.weight)
        narrow.bias.copy_(old.bias)
    model.classifier = nn.Sequential(*list(model.classifier)[:-1], widen, narrow)
    return model


def identity_conv(channels: int) -> nn.Conv2d:
    """A 3x3 convolution that copies its input: weight[i, i, 1, 1] = 1, zeros elsewhere."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[range(channels), range(channels), 1, 1] = 1.0
    return conv


def make_slow(model: nn.Module, layers: int) -> nn.Module:
    """Insert `layers` exact identity convolutions after the first block of the network.

    MobileNetV2's features[0] (Conv, BatchNorm, ReLU6) outputs 32 channels at half the input
    size; each inserted Conv2d(32, 32, 3) copies that map, so the logits stay the same and
    only the compute grows (see SLOW_EXTRA_LAYERS in config.py for the figures).
    """
    if layers < 1:
        raise ValueError(f"make_slow needs at least one layer, got {layers}")
    first = model.features[0]
    convs = [m for m in first.modules() if isinstance(m, nn.Conv2d)]
    if not convs or convs[-1].out_channels != SLOW_CHANNELS:
        raise ValueError(f"make_slow needs MobileNetV2's features[0] with {SLOW_CHANNELS} "
                         "output channels")
    extra = [identity_conv(SLOW_CHANNELS) for _ in range(layers)]
    model.features[0] = nn.Sequential(first, *extra)
    return model


def export_onnx(model: nn.Module, path: Path) -> Path:
    """Export model to ONNX (batch size free, input_size fixed) with its serving metadata."""
    import onnx

    model = model.cpu().eval()
    size = int(model.input_size)
    example = torch.zeros(2, 3, size, size)
    try:
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
        # Protobuf merges concatenated messages (repeated fields append), so appending a
        # ModelProto that holds only metadata_props adds them without loading the weights
        # again (an oversized model is over a gigabyte).
        props = [onnx.StringStringEntryProto(key=k, value=v) for k, v in metadata(model).items()]
        with open(path, "ab") as out:
            out.write(onnx.ModelProto(metadata_props=props).SerializeToString())
    except Exception as err:  # any exporter failure: the model cannot be served
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}") from err
    return path


def metadata(model: nn.Module) -> dict[str, str]:
    """The ONNX metadata_props the app reads: class_names (JSON list) and input_size."""
    return {META_CLASS_NAMES: json.dumps(list(model.class_names)),
            META_INPUT_SIZE: str(int(model.input_size))}


def save_for_serving(model: nn.Module, out_dir: Path, version: str) -> Path:
    """Write model.onnx, model.pth and versions.txt into out_dir; return the ONNX path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    # A new file renamed into place: a model loaded from the old one (load_torch_model maps
    # its weights from the file) keeps reading the old file, never a half-written one.
    # (Same file name in a side folder: torch.save records the name inside the archive.)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".partial-") as side:
        partial = Path(side) / TORCH_FILE
        torch.save(model, partial)
        partial.replace(out_dir / TORCH_FILE)
    (out_dir / VERSIONS_FILE).write_text(f"{version}\n")
    return export_onnx(model, out_dir / ONNX_FILE)


def load_torch_model(path: Path) -> nn.Module:
    """Load a model.pth written by save_for_serving, on the CPU, in eval mode.

    mmap: the weights stay pages of the file, which the kernel can drop and read again, so
    the evaluation and the MLflow upload do not hold a second private copy of an oversized
    model (see MEMORY_PEAKS in config.py).
    """
    model = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{path} does not hold a torch.nn.Module")
    return model.eval()
