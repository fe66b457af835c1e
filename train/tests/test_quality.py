"""The model is accurate enough on the held-out evaluation split."""


def test_accuracy_reaches_threshold(results, cfg):
    """Overall accuracy on evaluation/ is at least EVAL_MIN_ACCURACY."""
    assert results["accuracy"] >= cfg.min_accuracy, (
        f"accuracy {results['accuracy']:.3f} < {cfg.min_accuracy}")


def test_every_class_reaches_recall_floor(results, cfg):
    """No class is neglected: each recall is at least EVAL_MIN_CLASS_RECALL."""
    weak = {name: round(r, 3) for name, r in results["recall"].items()
            if r < cfg.min_class_recall}
    assert not weak, f"recall below {cfg.min_class_recall}: {weak}"


def test_prediction_stable_under_horizontal_flip(scores, cfg, metrics):
    """A mirrored photo shows the same dish: most predictions must not change."""
    agreement = scores.flip_agreement
    metrics["flip_agreement"] = agreement
    assert agreement >= cfg.min_flip_agreement, (
        f"only {agreement:.3f} of predictions survive a flip (< {cfg.min_flip_agreement})")
