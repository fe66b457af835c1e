"""Two-stage training: the new head alone first, then the whole network (fine-tuning)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import config
import torch
from config import TrainConfig
from dataset import make_loader
from model import build_model, make_oversized, make_slow, resolve_weights
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transforms import eval_transform, train_transform

EpochCallback = Callable[[dict[str, float]], None]
PROGRESS_EVERY_S = 30.0  # within an epoch, print progress at most this often
# Random weights come without batch-norm statistics: measure them on this many training
# images before freezing the backbone (enough for a per-channel mean and variance).
CALIBRATION_IMAGES = 256


def pick_device(wanted: str = "auto") -> torch.device:
    """The device to train on: `wanted` (auto, cuda, cpu); auto takes the GPU if there is one."""
    if wanted != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if wanted == "cuda":
        raise config.ConfigError(
            f"device=cuda, but torch {torch.__version__} sees no GPU (built for CUDA "
            f"{torch.version.cuda or 'none'}): run the CUDA training image "
            "(build-train-image -p gpu=true) on a node whose NVIDIA driver supports that CUDA "
            "(notebook 7, 'Training on the H100 node')")
    return torch.device("cpu")


def _workers(cfg: TrainConfig, device: torch.device) -> int:
    """Data-loading processes: cfg.num_workers, or 0 on a CPU and 4 next to a GPU."""
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return 4 if device.type == "cuda" else 0


def duration(seconds: float) -> str:
    """A short human duration: '45 s', '12 min 5 s', '2 h 3 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _run_epoch(model, loader, device, optimizer=None, label: str = "") -> tuple[float, float]:
    """One pass over loader; trains when an optimizer is given. Returns (loss, accuracy)."""
    model.train(optimizer is not None)
    loss_fn = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    start = last = time.perf_counter()
    with torch.set_grad_enabled(optimizer is not None):
        for batch, (images, labels) in enumerate(loader, 1):
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = loss_fn(logits, labels)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            now = time.perf_counter()
            if label and now - last >= PROGRESS_EVERY_S and batch < len(loader):
                # A long epoch (the full set on a CPU) says how far it is, for `argo logs`.
                rate = seen / (now - start)
                left = (len(loader.dataset) - seen) / rate
                print(f"  {label}: batch {batch}/{len(loader)}, {rate:.1f} images/s, "
                      f"about {duration(left)} left in this pass", flush=True)
                last = now
    return total_loss / seen, correct / seen


def calibrate_batch_norm(model: nn.Module, loader: DataLoader, device: torch.device) -> int:
    """Set the backbone's batch-norm statistics to those of the first images of loader.

    Each batch norm's running mean and variance become the average over the batches seen
    (momentum None), as if it had trained on them; nothing else changes. Returns the count
    of images used (CALIBRATION_IMAGES, or all of loader if it has fewer). Give it a
    shuffled loader, so that those images come from every class.
    """
    norms = [m for m in model.features.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.features.train()
    seen = 0
    with torch.no_grad():
        for images, _ in loader:
            model.features(images.to(device))
            seen += len(images)
            if seen >= CALIBRATION_IMAGES:
                break
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.features.eval()
    return seen


def split_point(model: nn.Module, cfg: TrainConfig) -> int:
    """How many of the backbone's first blocks stay frozen in fine-tuning (0: none)."""
    blocks = len(model.features)
    if cfg.finetune_blocks > blocks:
        raise config.ConfigError(
            f"finetune_blocks must be at most {blocks} (the backbone's blocks), "
            f"got {cfg.finetune_blocks}")
    return blocks - cfg.finetune_blocks if cfg.finetune_blocks else 0


def top(model: nn.Module, first: int) -> nn.Sequential:
    """The model from its feature block `first` on: what fine-tuning trains (shared weights)."""
    return nn.Sequential(*model.features[first:], nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         model.classifier)


class Frozen(nn.Module):
    """A part of the network that does not learn: no gradients, batch norms in eval mode."""

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part = part.requires_grad_(False)

    def train(self, mode: bool = True) -> Frozen:
        """Whatever the mode asked, the part stays in eval mode."""
        super().train(mode)
        self.part.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The part's output, without recording the graph."""
        with torch.no_grad():
            return self.part(x)


def extract_features(
    model: nn.Module, loader: DataLoader, device: torch.device, first: int = 0
) -> tuple[TensorDataset, TensorDataset | None]:
    """Run the frozen backbone once (eval mode) over every image of loader.

    Returns its pooled features (what the head gets) and, when first > 0, the output of
    its first `first` blocks (what the fine-tuned top gets), both on the CPU with the labels.
    """
    model.features.eval()
    pooled, early, labels = [], [], []
    with torch.inference_mode():
        for images, batch_labels in loader:
            x = model.features[:first](images.to(device))
            if first:
                early.append(x.cpu())
            maps = model.features[first:](x)
            pooled.append(torch.flatten(nn.functional.adaptive_avg_pool2d(maps, 1), 1).cpu())
            labels.append(batch_labels)
    labels_all = torch.cat(labels)
    return (TensorDataset(torch.cat(pooled), labels_all),
            TensorDataset(torch.cat(early), labels_all) if first else None)


@dataclass
class Cache:
    """What the cached epochs train on: loaders of features computed once, and their cost."""

    head: tuple[DataLoader, DataLoader] | None  # pooled features: training, validation
    top: tuple[DataLoader, DataLoader] | None  # output of the frozen blocks (finetune_blocks)
    seconds: float


def cache(
    model: nn.Module, data_dir: Path, val: DataLoader, cfg: TrainConfig, device: torch.device,
    first: int = 0,
) -> Cache:
    """Compute once what the epochs would recompute: the frozen backbone's output.

    cfg.cache_features 0 is the old way, kept for the benchmark: nothing is cached, so the
    backbone runs again on every image in every epoch. 1: the backbone in eval mode runs
    once over every training and validation image, un-augmented (train/README.md says why).
    The head epochs train on its pooled features; with first > 0 (split_point), the
    fine-tune epochs train the top blocks on the output of the first `first`. Random weights
    first get their batch-norm statistics measured (calibrate_batch_norm); the seconds count
    that too.
    """
    first = first if cfg.finetune_epochs else 0  # without fine-tune epochs, none to keep for
    if not cfg.cache_features or not (cfg.head_epochs or first):
        return Cache(None, None, 0.0)
    workers = _workers(cfg, device)
    start = time.perf_counter()
    if not getattr(model, "pretrained", False):
        shuffled = make_loader(data_dir, "training", eval_transform(model.input_size),
                               cfg.batch_size, shuffle=True, workers=workers, seed=cfg.seed,
                               subset=cfg.subset)
        used = calibrate_batch_norm(model, shuffled, device)
        print(f"[train] random weights: batch-norm statistics measured on {used} training "
              f"images in {time.perf_counter() - start:.1f} s", flush=True)
    images = make_loader(data_dir, "training", eval_transform(model.input_size),
                         cfg.batch_size, workers=workers, subset=cfg.subset)
    extracting = time.perf_counter()
    (train_pooled, train_early), (val_pooled, val_early) = (
        extract_features(model, loader, device, first) for loader in (images, val))
    seconds = time.perf_counter() - extracting
    n_images = len(train_pooled) + len(val_pooled)
    kept = f" and the output of its first {first} blocks" if first else ""
    print(f"[train] features of the frozen backbone{kept}: {n_images} images, once, in "
          f"{seconds:.1f} s ({n_images / seconds:.1f} images/s)", flush=True)

    def loaders(train: TensorDataset, val_set: TensorDataset) -> tuple[DataLoader, DataLoader]:
        shuffled = DataLoader(train, batch_size=cfg.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(cfg.seed))
        return shuffled, DataLoader(val_set, batch_size=cfg.batch_size)

    return Cache(loaders(train_pooled, val_pooled),
                 loaders(train_early, val_early) if first else None,
                 time.perf_counter() - start)


def stage_setup(
    stage: str, model: nn.Module, cached: Cache, loaders: tuple[DataLoader, DataLoader],
    cfg: TrainConfig, first: int,
) -> tuple[nn.Module, DataLoader, DataLoader, torch.optim.Optimizer]:
    """The module a stage runs, its two loaders and its optimizer; only what learns has grads.

    head: the classifier alone (on cached features) or the whole model with a frozen
    backbone (the old way). finetune: the whole model (first 0), or its blocks from `first`
    on, on the cached output of the frozen ones (or behind them, Frozen, when not cached).
    """
    model.requires_grad_(False)
    if stage == "head":
        model.classifier.requires_grad_(True)
        net, (train, val) = (model.classifier, cached.head) if cached.head else (model, loaders)
        return net, train, val, torch.optim.Adam(model.classifier.parameters(), lr=cfg.head_lr)
    learning = top(model, first)
    learning.requires_grad_(True)
    if not first:
        net, (train, val) = model, loaders
    elif cached.top:
        net, (train, val) = learning, cached.top
    else:
        net, (train, val) = nn.Sequential(Frozen(model.features[:first]), learning), loaders
    return net, train, val, torch.optim.Adam(learning.parameters(), lr=cfg.finetune_lr)


def fit(
    model: nn.Module, data_dir: Path, cfg: TrainConfig, on_epoch: EpochCallback | None = None
) -> nn.Module:
    """Train model on data_dir/training, keep the weights with the best validation accuracy."""
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    workers = _workers(cfg, device)
    size = model.input_size
    train_loader = make_loader(data_dir, "training", train_transform(size), cfg.batch_size,
                               shuffle=True, workers=workers, seed=cfg.seed, subset=cfg.subset)
    val_loader = make_loader(data_dir, "validation", eval_transform(size), cfg.batch_size,
                             workers=workers, subset=cfg.subset)
    total = cfg.head_epochs + cfg.finetune_epochs
    n_train, n_val = len(train_loader.dataset), len(val_loader.dataset)
    print(f"[train] {n_train} training and {n_val} validation images"
          f"{f' ({cfg.subset} per class)' if cfg.subset else ''}, {total} epochs, "
          f"batch {cfg.batch_size}, on {device.type}", flush=True)
    model.to(device)
    first = split_point(model, cfg)  # a finetune_blocks the model lacks fails here
    cached = cache(model, data_dir, val_loader, cfg, device, first)
    features_s = cached.seconds  # the first epoch pays for the features
    best_acc, best_state, epoch, spent = -1.0, None, 0, 0.0
    for stage, epochs in (("head", cfg.head_epochs), ("finetune", cfg.finetune_epochs)):
        if not epochs:
            continue
        net, train, val, optimizer = stage_setup(stage, model, cached,
                                                 (train_loader, val_loader), cfg, first)
        # cosine decay: big steps early, small ones to settle at the end of each stage
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        for _ in range(epochs):
            epoch += 1
            start = time.perf_counter() - features_s
            train_loss, train_acc = _run_epoch(net, train, device, optimizer,
                                               f"epoch {epoch} training")
            train_s = time.perf_counter() - start
            val_loss, val_acc = _run_epoch(net, val, device, label=f"epoch {epoch} validation")
            seconds = time.perf_counter() - start
            spent += seconds
            # The estimate assumes the remaining epochs take as long as the mean so far.
            stats = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                     "val_loss": val_loss, "val_accuracy": val_acc, "epoch_seconds": seconds,
                     "feature_seconds": features_s, "images_per_second": n_train / train_s,
                     "eta_seconds": spent / epoch * (total - epoch)}
            features_s = 0.0
            print(f"epoch {epoch:2d} [{stage:8s}] train loss {train_loss:.3f} "
                  f"acc {train_acc:.3f} | val loss {val_loss:.3f} acc {val_acc:.3f} "
                  f"| {seconds:.1f} s on {device.type}, {stats['images_per_second']:.1f} "
                  f"images/s | epoch {epoch}/{total}, about "
                  f"{duration(stats['eta_seconds'])} left", flush=True)
            schedule.step()
            if on_epoch:
                on_epoch(stats)
            if val_acc > best_acc:
                best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
    model.requires_grad_(True)
    model.load_state_dict(best_state)
    return model.cpu().eval()


def train_scenario(
    scenario: str, cfg: TrainConfig, on_epoch: EpochCallback | None = None
) -> nn.Module:
    """Build and train the model of a scenario; widen it (oversized) or slow it down (slow)."""
    pretrained = resolve_weights(cfg.weights)
    # Seeded before the new layers get their random weights: two runs of the same code on
    # the same data give the same model (a retrained canary predicts what production does).
    torch.manual_seed(cfg.seed)
    model = build_model(scenario, pretrained=pretrained, image_size=cfg.image_size)
    model.pretrained = pretrained
    print(f"[train] {scenario} at {model.input_size} px, pretrained={pretrained}", flush=True)
    model = fit(model, cfg.data_dir, cfg, on_epoch)
    if scenario == "oversized":
        model = make_oversized(model, config.parse_quantity(config.SERVING_MEMORY_LIMIT))
    elif scenario == "slow":
        model = make_slow(model, config.SLOW_EXTRA_LAYERS)
    return model
