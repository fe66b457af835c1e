"""The ONNX model computes what the PyTorch model it was exported from computes."""

import gc

import numpy as np
import torch
from model import load_torch_model


def test_onnx_logits_match_pytorch(scores, torch_model_path, eval_loader, cfg, metrics):
    """Max absolute logit difference over the evaluation split <= EVAL_MAX_LOGIT_DIFF.

    The ONNX logits are the suite's shared scores; only the reference runs here.
    """
    reference = load_torch_model(torch_model_path)
    worst, seen = 0.0, 0
    try:
        with torch.inference_mode():
            for images, _ in eval_loader:
                expected = reference(images).numpy()
                served = scores.logits[seen:seen + len(expected)]
                worst = max(worst, float(np.abs(served - expected).max()))
                seen += len(expected)
    finally:
        del reference  # an oversized model should not stay in memory twice
        gc.collect()
    metrics["max_logit_diff"] = worst
    assert worst <= cfg.max_logit_diff, (
        f"ONNX and PyTorch logits differ by up to {worst:.3g} (> {cfg.max_logit_diff})")
