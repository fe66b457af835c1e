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
    model.features[0].register_forward_hook(lambda _m, args, _out: seen.__setitem__(
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
                         cfg.batch_size, shuffle=True, seed=cfg.seed, subset=PER_CLASS)
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


def test_calibration_sees_every_class_first(sample_data, monkeypatch):
    """The images that measure the batch norms come shuffled: with room for 2 of the 3 per
    class, all 11 classes are among them (in file order, only the first 8 would be)."""
    monkeypatch.setattr(trainer, "CALIBRATION_IMAGES", 2 * len(CLASS_NAMES))
    seen: list[int] = []
    measure = trainer.calibrate_batch_norm

    def recording(model, loader, device):
        for _, labels in loader:
            seen.extend(labels.tolist())
            if len(seen) >= trainer.CALIBRATION_IMAGES:
                break
        return measure(model, loader, device)

    monkeypatch.setattr(trainer, "calibrate_batch_norm", recording)
    cfg = head_only(sample_data, 1)
    model = build_model("normal", pretrained=False, image_size=cfg.image_size)
    val = make_loader(sample_data, "validation", eval_transform(cfg.image_size),
                      cfg.batch_size, subset=PER_CLASS)
    trainer.cache(model, sample_data, val, cfg, torch.device("cpu"))
    assert len(set(seen[:trainer.CALIBRATION_IMAGES])) == len(CLASS_NAMES), seen


def test_pooled_features_are_what_the_head_gets(sample_data):
    """The cached vector of an image, through the head, gives the model's own logits."""
    torch.manual_seed(0)
    model = build_model("normal", pretrained=False).eval()
    loader = make_loader(sample_data, "validation", eval_transform(64), 8, subset=1)
    cached, early = trainer.extract_features(model, loader, torch.device("cpu"))
    assert early is None
    images = torch.stack([image for image, _ in loader.dataset])
    with torch.inference_mode():
        assert torch.allclose(model.classifier(cached.tensors[0]), model(images), atol=1e-4)
    assert cached.tensors[1].tolist() == list(range(len(CLASS_NAMES)))


def test_cache_features_is_a_switch():
    """TRAIN_CACHE_FEATURES: 1 in the food11 schedules, 0 (TrainConfig's default) for the
    sample set (random weights, the whole network learns), anything else refused."""
    assert config.load_config({"dataset": "food11"}, env={}).cache_features == 1
    assert config.load_config({"dataset": "food11", "subset": "50"}, env={}).cache_features == 1
    assert config.load_config(env={}).cache_features == 0
    assert config.load_config(env={"TRAIN_CACHE_FEATURES": "1"}).cache_features == 1
    assert config.load_config(env={"TRAIN_CACHE_FEATURES": "0"}).cache_features == 0
    with pytest.raises(config.ConfigError, match="cache_features must be 0 or 1"):
        config.load_config({"cache_features": "2"}, env={})


def top_tuned(sample_data: Path, cache: int, blocks: int = 2) -> config.TrainConfig:
    """One head epoch, then two fine-tune epochs of the last `blocks` blocks only."""
    return config.load_config({"data_dir": str(sample_data), "weights": "none",
                               "subset": str(PER_CLASS), "head_epochs": "1",
                               "finetune_epochs": "2", "finetune_blocks": str(blocks),
                               "cache_features": str(cache)}, env={})


@pytest.mark.parametrize("cache", [1, 0])
def test_fine_tuning_the_top_leaves_the_blocks_below_as_they_were(sample_data, cache):
    """finetune_blocks=2: blocks 0-16 keep their weights (cached, their batch-norm statistics
    too; the old way's head epoch moves those), the top two blocks learn; cached, block 0
    sees each image once (calibration, then the features every epoch reuses); the old way,
    again in every epoch."""
    cfg = top_tuned(sample_data, cache)
    fitted, stats, seen = train_head(cfg)
    torch.manual_seed(0)
    untrained = build_model("normal", pretrained=False, image_size=cfg.image_size)
    calibrated = copy.deepcopy(untrained)
    if cache:
        loader = make_loader(sample_data, "training", eval_transform(cfg.image_size),
                             cfg.batch_size, shuffle=True, seed=cfg.seed, subset=PER_CLASS)
        trainer.calibrate_batch_norm(calibrated, loader, torch.device("cpu"))
    frozen, tuned = fitted.features[:17], fitted.features[17:]
    reference = calibrated.features[:17].state_dict()
    kept = frozen.state_dict() if cache else dict(frozen.named_parameters())
    for name, value in kept.items():
        assert torch.equal(value, reference[name]), name
    before = untrained.features[17:].state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in tuned.state_dict().items())
    images = PER_CLASS * len(CLASS_NAMES)
    assert [s["epoch"] for s in stats] == [1, 2, 3]
    assert seen == (3 * images if cache else 3 * 2 * images)


def test_the_cached_top_computes_what_the_model_computes(sample_data):
    """The top blocks on the stored output of the blocks below give the model's logits."""
    torch.manual_seed(0)
    model = build_model("normal", pretrained=False).eval()
    loader = make_loader(sample_data, "validation", eval_transform(64), 8, subset=1)
    pooled, early = trainer.extract_features(model, loader, torch.device("cpu"), first=14)
    images = torch.stack([image for image, _ in loader.dataset])
    with torch.inference_mode():
        expected = model(images)
        assert torch.allclose(trainer.top(model, 14)(early.tensors[0]), expected, atol=1e-4)
        assert torch.allclose(model.classifier(pooled.tensors[0]), expected, atol=1e-4)


def test_finetune_blocks_must_fit_the_backbone(sample_data):
    """More blocks than MobileNetV2 has (19), or fewer than 0, is refused with the limit."""
    with pytest.raises(config.ConfigError, match="finetune_blocks must be at most 19"):
        trainer.fit(build_model("normal"), sample_data, top_tuned(sample_data, 1, 20))
    with pytest.raises(config.ConfigError, match="finetune_blocks must not be negative"):
        top_tuned(sample_data, 1, -1)
    assert config.load_config({"dataset": "food11", "subset": "50"}, env={}).finetune_blocks == 5
    assert config.load_config({"dataset": "food11"}, env={}).finetune_blocks == 0
