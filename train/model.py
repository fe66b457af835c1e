"""MobileNetV2 for Food-11, the failure-scenario variants, and the serving file format.

Every model carries two plain attributes the app relies on: `class_names` (output order)
and `input_size` (the square side in pixels the model was trained at). The variants are
built only from torch/torchvision classes, so a pickled model loads wherever torch and
torchvision are installed (the app image does not contain this file).
"""

from __future__ import annotations

import math
import socket
from collections import OrderedDict
from pathlib import Path

import config
import torch
from torch import nn
from torch.nn.utils import skip_init
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from app.food11 import CLASS_NAMES, IMAGE_SIZE

FEATURES = 1280  # channels of MobileNetV2's last feature map
STRIDE = 32  # MobileNetV2 shrinks each side of the input by this factor


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
    """Build the untrained model of a scenario (oversized starts as normal; see make_oversized)."""
    if scenario not in config.SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {config.SCENARIOS}")
    net = _backbone(pretrained)
    if scenario != "bad-architecture":
        net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURES, len(CLASS_NAMES)))
        return _label(net, image_size)
    # bad-architecture: flatten the k x k feature map instead of pooling it, so the head's
    # input width (and with it the accepted image size) is fixed at twice the serving size.
    size = 2 * image_size
    side = math.ceil(size / STRIDE)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURES * side * side, len(CLASS_NAMES)))
    flat = nn.Sequential(OrderedDict(features=net.features, flatten=nn.Flatten(), classifier=head))
    return _label(flat, size)


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
    if not isinstance(old, nn.Linear) or old.in_features != FEATURES:
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


def save_for_serving(model: nn.Module, out_dir: Path, version: str) -> Path:
    """Write out_dir/model.pth (whole module) and out_dir/versions.txt; return the model path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pth"
    torch.save(model.cpu().eval(), path)
    (out_dir / "versions.txt").write_text(f"{version}\n")
    return path


def load_for_serving(path: Path) -> nn.Module:
    """Load a model written by save_for_serving, on the CPU, in eval mode.

    mmap: the weights stay pages of the file, which the kernel can drop and read again, so
    the evaluation and the MLflow upload do not hold a second private copy of an oversized
    model (see MEMORY_PEAKS in config.py).
    """
    model = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{path} does not hold a torch.nn.Module")
    return model.eval()
