"""Head epochs on cached features: the backbone runs once per image instead of every epoch."""

from __future__ import annotations

import copy
from pathlib import Path

import config
import pytest
import torch
import trainer
from dataset import make_loader
from model import build_model
from transforms import eval_transform

from app.food11 import CLASS_NAMES

PER_CLASS = 3  # 33 training and 33 validation images: enough batches to shuffle and drop out


def head_only(sample_data: Path, cache: int) -> config.TrainConfig:
    """Two head epochs, no fine-tuning, on a few images of the sample set."""
    return config.load_config({"data_dir": str(sample_data), "weights": "none",
                               "subset": str(PER_CLASS), "head_epochs": "2",
                               "finetune_epochs": "0", "cache_features": str(cache)}, env={})


def train_head(cfg: config.TrainConfig) -> tuple[torch.nn.Module, list[dict], int]:
    """Fit a freshly built model; return it, its epoch stats and the images the backbone saw."""
    torch.manual_seed(0)
    model = build_model("normal", pretrained=False, image_size=cfg.image_size)
    seen = [0]
    model.features.register_forward_hook(lambda _m, args, _out: seen.__setitem__(
        0, seen[0] + len(args[0])))
    stats: list[dict] = []
    fitted = trainer.fit(model, cfg.data_dir, cfg, stats.append)
    return fitted, stats, seen[0]


@pytest.fixture(scope="module")
def both_ways(sample_data: Path) -> dict[int, tuple[torch.nn.Module, list[dict], int]]:
    """The head trained on cached features (1) and the old way, recomputed (0)."""
    return {cache: train_head(head_only(sample_data, cache)) for cache in (1, 0)}


def test_the_backbone_runs_once_per_image_when_cached(both_ways):
    """Cached: the backbone sees each image once (after measuring its batch norms); the old
    way: each training and validation image again in every head epoch."""
    train = val = PER_CLASS * len(CLASS_NAMES)
    assert both_ways[1][2] == train + (train + val)  # calibration, then the features
    assert both_ways[0][2] == 2 * (train + val)  # two head epochs
    for stats in both_ways[1][1], both_ways[0][1]:
        assert [s["epoch"] for s in stats] == [1, 2]
    assert both_ways[1][1][0]["feature_seconds"] > 0 == both_ways[1][1][1]["feature_seconds"]
    assert all(s["feature_seconds"] == 0 for s in both_ways[0][1])


def test_cached_head_epochs_leave_the_backbone_as_calibrated(both_ways, sample_data):
    """The weights stay those of the untrained model, and the batch-norm statistics those
    measured before the head epochs; the old way moves them (training mode)."""
    cfg = head_only(sample_data, 1)
    torch.manual_seed(0)
    untrained = build_model("normal", pretrained=False, image_size=cfg.image_size)
    reference = copy.deepcopy(untrained)
    loader = make_loader(sample_data, "training", eval_transform(cfg.image_size),
                         cfg.batch_size, subset=PER_CLASS)
    trainer.calibrate_batch_norm(reference, loader, torch.device("cpu"))
    cached, old = (both_ways[c][0].features.state_dict() for c in (1, 0))
    for name, weight in untrained.features.named_parameters():
        assert torch.equal(cached[name], weight.detach()), name
        assert torch.equal(old[name], weight.detach()), name
    expected = reference.features.state_dict()
    means = [k for k in cached if k.endswith("running_mean")]
    assert means and all(torch.allclose(cached[k], expected[k], atol=1e-6) for k in means)
    assert not all(torch.allclose(old[k], expected[k], atol=1e-6) for k in means)


def test_calibration_measures_the_statistics_of_the_images(sample_data):
    """After calibration, the first batch norm's running mean is its input's channel mean.

    (The mean over batches of each batch's mean: 16 images, then 6.)
    """
    torch.manual_seed(0)
    model = build_model("normal", pretrained=False)
    loader = make_loader(sample_data, "training", eval_transform(64), 16, subset=2)
    assert trainer.calibrate_batch_norm(model, loader, torch.device("cpu")) == 22
    conv, norm = model.features[0][0], model.features[0][1]
    with torch.no_grad():
        means = torch.stack([conv(images).mean((0, 2, 3)) for images, _ in loader])
    assert torch.allclose(norm.running_mean, means.mean(0), atol=1e-5)
    assert norm.momentum == 0.1 and not model.features.training


def test_pooled_features_are_what_the_head_gets(sample_data):
    """The cached vector of an image, through the head, gives the model's own logits."""
    torch.manual_seed(0)
    model = build_model("normal", pretrained=False).eval()
    loader = make_loader(sample_data, "validation", eval_transform(64), 8, subset=1)
    cached = trainer.extract_features(model, loader, torch.device("cpu"))
    images = torch.stack([image for image, _ in loader.dataset])
    with torch.inference_mode():
        assert torch.allclose(model.classifier(cached.tensors[0]), model(images), atol=1e-4)
    assert cached.tensors[1].tolist() == list(range(len(CLASS_NAMES)))


def test_cache_features_is_a_switch():
    """TRAIN_CACHE_FEATURES: 1 by default, 0 to recompute, anything else refused."""
    assert config.load_config(env={}).cache_features == 1
    assert config.load_config(env={"TRAIN_CACHE_FEATURES": "0"}).cache_features == 0
    with pytest.raises(config.ConfigError, match="cache_features must be 0 or 1"):
        config.load_config({"cache_features": "2"}, env={})
