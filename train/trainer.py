"""Two-stage training: the new head alone first, then the whole network (fine-tuning)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import config
import torch
from config import TrainConfig
from dataset import make_loader
from model import build_model, make_oversized, make_slow, resolve_weights
from torch import nn
from transforms import eval_transform, train_transform

EpochCallback = Callable[[dict[str, float]], None]
PROGRESS_EVERY_S = 30.0  # within an epoch, print progress at most this often


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
    head = list(model.classifier.parameters())
    stages = [("head", cfg.head_epochs, cfg.head_lr, head),
              ("finetune", cfg.finetune_epochs, cfg.finetune_lr, list(model.parameters()))]
    best_acc, best_state, epoch, spent = -1.0, None, 0, 0.0
    for stage, epochs, lr, params in stages:
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=lr)
        # cosine decay: big steps early, small ones to settle at the end of each stage
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        for _ in range(epochs):
            epoch += 1
            start = time.perf_counter()
            train_loss, train_acc = _run_epoch(model, train_loader, device, optimizer,
                                               f"epoch {epoch} training")
            train_s = time.perf_counter() - start
            val_loss, val_acc = _run_epoch(model, val_loader, device,
                                           label=f"epoch {epoch} validation")
            seconds = time.perf_counter() - start
            spent += seconds
            # The estimate assumes the remaining epochs take as long as the mean so far.
            stats = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                     "val_loss": val_loss, "val_accuracy": val_acc, "epoch_seconds": seconds,
                     "images_per_second": n_train / train_s,
                     "eta_seconds": spent / epoch * (total - epoch)}
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
