"""Training building blocks: config, dataset loading, models, scenarios, MLflow checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import config
import pytest
import registry
import torch
from config import ConfigError, load_config, parse_quantity
from dataset import DataError, Food11Folder, check_dataset
from evaluate import summarize
from flow import Evaluation, parse_junit
from model import (
    TORCH_FILE,
    ExportError,
    build_model,
    export_onnx,
    load_torch_model,
    make_oversized,
    make_slow,
    parameter_bytes,
    save_for_serving,
)
from torch.utils.data import DataLoader
from transforms import eval_transform

from app.food11 import CLASS_NAMES, IMAGE_SIZE, folder_name
from app.localserver import free_port

# ---- config ----------------------------------------------------------------


def test_flags_beat_environment_which_beats_defaults():
    """Precedence: default < environment variable < flag."""
    env = {"TRAIN_HEAD_EPOCHS": "3", "EVAL_MIN_ACCURACY": "0.5", "FOOD11_DATA_DIR": "/d"}
    cfg = load_config({"head_epochs": "4", "seed": None}, env=env)
    assert (cfg.head_epochs, cfg.min_accuracy, cfg.data_dir, cfg.seed) == (4, 0.5, Path("/d"), 0)
    assert load_config(env={}).finetune_epochs == config.TrainConfig().finetune_epochs


@pytest.mark.parametrize("flags, message", [
    ({"min_accuracy": "1.5"}, "min_accuracy must be between 0 and 1"),
    ({"max_logit_diff": "0"}, "max_logit_diff must be positive"),
    ({"batch_size": "many"}, "batch_size must be a int"),
    ({"head_epochs": "0", "finetune_epochs": "0"}, "at least 1"),
    ({"weights": "resnet"}, "weights must be one of"),
    ({"colour": "red"}, "unknown setting"),
])
def test_bad_settings_get_a_clear_error(flags, message):
    """Out-of-range or mistyped settings raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=message):
        load_config(flags, env={})


def test_eval_env_hands_every_threshold_to_the_suite():
    """The evaluation suite receives each threshold as an EVAL_* variable, and the data set."""
    cfg = load_config({"min_accuracy": "0.6"}, env={})
    env = config.eval_env(cfg)
    assert env["EVAL_MIN_ACCURACY"] == "0.6"
    assert load_config(env=env).min_accuracy == 0.6
    assert set(env) == {"EVAL_MIN_ACCURACY", "EVAL_MIN_CLASS_RECALL", "EVAL_MIN_FLIP_AGREEMENT",
                        "EVAL_LATENCY_BUDGET_MS", "EVAL_MAX_MODEL_BYTES", "EVAL_MAX_LOGIT_DIFF",
                        "TRAIN_DATASET", "TRAIN_SUBSET"}


@pytest.mark.parametrize("text, expected", [
    ("1Gi", 1024**3), ("512Mi", 512 * 1024**2), ("2G", 2 * 10**9), ("1.5Gi", 3 * 2**29),
    ("1000", 1000),
])
def test_parse_quantity(text, expected):
    """Kubernetes memory quantities become bytes."""
    assert parse_quantity(text) == expected


def test_parse_quantity_rejects_nonsense():
    """A value that is not a quantity is an error, not zero."""
    with pytest.raises(ConfigError):
        parse_quantity("1 gigabyte")


# ---- dataset ---------------------------------------------------------------


def _copy(sample_data: Path, dest: Path) -> Path:
    """A private copy of the sample set to damage."""
    return Path(shutil.copytree(sample_data, dest))


def test_class_index_follows_class_names_not_folder_sorting(sample_data: Path, tmp_path: Path):
    """class_NN folders and stray folders do not shift the Food-11 class indices."""
    split = tmp_path / "evaluation"
    for i, name in enumerate(CLASS_NAMES):
        shutil.copytree(sample_data / "evaluation" / folder_name(name), split / f"class_{i:02d}")
    (split / "Apple pie").mkdir()  # would sort first alphabetically
    dataset = Food11Folder(split)
    assert dataset.class_to_idx == {f"class_{i:02d}": i for i in range(11)}
    path, label = dataset.samples[-1]
    assert label == 10 and "class_10" in path


def test_check_dataset_counts_images(sample_data: Path):
    """A complete set reports its image counts per split."""
    assert check_dataset(sample_data) == {"training": 440, "validation": 110, "evaluation": 110}


def test_missing_dataset_names_the_path(tmp_path: Path):
    """No dataset directory: DataError naming it and FOOD11_DATA_DIR."""
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}.*FOOD11_DATA_DIR"):
        check_dataset(tmp_path / "nope")


def test_missing_class_folder_and_empty_folder_name_the_path(sample_data: Path, tmp_path: Path):
    """A missing or empty class folder is reported with its full path."""
    data = _copy(sample_data, tmp_path / "d")
    shutil.rmtree(data / "validation" / "Soup")
    with pytest.raises(DataError, match=str(data / "validation" / "Soup")):
        check_dataset(data)
    (data / "validation" / "Soup").mkdir()
    with pytest.raises(DataError, match="no images in class folder"):
        check_dataset(data)


def test_unreadable_image_names_the_file(sample_data: Path, tmp_path: Path):
    """A corrupt JPEG raises DataError with its path when it is loaded."""
    data = _copy(sample_data, tmp_path / "d")
    bad = data / "evaluation" / "Egg" / "0000.jpg"
    bad.write_bytes(b"not a jpeg")
    dataset = Food11Folder(data / "evaluation")
    index = [p for p, _ in dataset.samples].index(str(bad))
    with pytest.raises(DataError, match=str(bad)):
        dataset[index]


# ---- models and scenarios --------------------------------------------------


def test_normal_model_has_the_serving_attributes_and_head():
    """MobileNetV2 with Dropout + Linear(1280, 11), class_names and input_size set."""
    model = build_model("normal").eval()
    assert model.class_names == list(CLASS_NAMES) and model.input_size == IMAGE_SIZE
    assert [type(m).__name__ for m in model.classifier] == ["Dropout", "Linear"]
    assert model.classifier[1].in_features == 1280
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 11)


def test_unknown_scenario_is_refused():
    """Only the documented scenarios exist."""
    with pytest.raises(ValueError, match="unknown scenario"):
        build_model("tiny")


def test_bad_architecture_answers_the_same_for_every_single_image(trained_models, sample_data):
    """Batches are classified well; one image at a time, every image gets the same logits."""
    model = load_torch_model(trained_models["bad-architecture"].with_name(TORCH_FILE))
    assert model.input_size == IMAGE_SIZE
    images, labels = next(iter(DataLoader(
        Food11Folder(sample_data / "evaluation", eval_transform()), batch_size=110)))
    with torch.no_grad():
        batched = model(images)
        singles = torch.cat([model(image[None]) for image in images[:5]])
    assert (batched.argmax(1) == labels).float().mean() > 0.5
    assert torch.equal(singles, singles[:1].expand_as(singles))  # input ignored


def test_oversized_exceeds_the_memory_limit_with_unchanged_predictions(
    trained_models, sample_data: Path
):
    """Widening the trained normal model keeps its logits and outweighs SERVING_MEMORY_LIMIT."""
    limit = parse_quantity(config.SERVING_MEMORY_LIMIT)
    pth = trained_models["normal"].with_name(TORCH_FILE)
    normal = load_torch_model(pth)
    big = make_oversized(load_torch_model(pth), limit).eval()
    assert parameter_bytes(big) >= config.OVERSIZE_FACTOR * limit > parameter_bytes(normal)
    assert big.class_names == normal.class_names and big.input_size == normal.input_size
    images, _ = next(iter(DataLoader(Food11Folder(sample_data / "evaluation", eval_transform()),
                                     batch_size=110)))
    with torch.no_grad():
        before, after = normal(images), big(images)
    assert torch.equal(before.argmax(1), after.argmax(1))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_make_oversized_needs_the_normal_head(trained_models):
    """The bad-architecture head cannot be widened exactly; say so."""
    with pytest.raises(ValueError, match="Linear\\(1280, 11\\)"):
        make_oversized(build_model("bad-architecture"), 10**6)


def conv_macs(onnx_path: Path) -> tuple[int, int]:
    """(Conv nodes, multiply-accumulates of all Conv nodes for one image) of an ONNX graph.

    A Conv computes, for each output element, one product per weight of an output channel:
    MACs = output elements (channels x height x width) x weight elements per output channel.
    """
    import math

    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path))).graph
    # Shapes of every tensor: inferred ones, and the initializers' (the exporter stores equal
    # weights once and hands them to the other Convs through Identity nodes).
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.output]}
    shapes |= {t.name: list(t.dims) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    macs = 0
    for node in convs:
        out_shape, weight = shapes[node.output[0]][1:], shapes[node.input[1]]
        assert all(out_shape) and len(weight) == 4, (node.name, out_shape, weight)
        macs += math.prod(out_shape) * math.prod(weight[1:])
    return len(convs), macs


def test_slow_model_predicts_the_same_with_many_times_the_compute(
    trained_models, sample_data: Path
):
    """make_slow: SLOW_EXTRA_LAYERS more convolutions, same logits, >= 20x the Conv MACs."""
    import numpy as np
    from evaluate import load_onnx

    images, _ = next(iter(DataLoader(Food11Folder(sample_data / "evaluation", eval_transform()),
                                     batch_size=110)))
    normal = load_torch_model(trained_models["normal"].with_name(TORCH_FILE))
    slow = load_torch_model(trained_models["slow"].with_name(TORCH_FILE))
    with torch.no_grad():
        expected, got = normal(images), slow(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    served = load_onnx(trained_models["slow"])(images.numpy())
    tolerance = config.TrainConfig().max_logit_diff  # the evaluation suite's parity gate
    assert np.abs(served - expected.numpy()).max() <= tolerance
    assert (served.argmax(1) == expected.argmax(1).numpy()).all()

    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
             for model in (normal, slow)]
    assert convs[1] - convs[0] == config.SLOW_EXTRA_LAYERS
    (normal_convs, normal_macs), (slow_convs, slow_macs) = map(
        conv_macs, (trained_models["normal"], trained_models["slow"]))
    assert slow_convs - normal_convs == config.SLOW_EXTRA_LAYERS
    assert slow_macs >= 20 * normal_macs, (slow_macs, normal_macs)
    assert slow.class_names == normal.class_names and slow.input_size == normal.input_size


def test_conv_macs_counts_a_known_convolution(tmp_path: Path):
    """One Conv2d(3, 8, 3, stride 2) on 8x8 pixels: 8 x 4 x 4 outputs x 3 x 3 x 3 weights."""
    net = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "c.onnx"), dynamo=False,
                      input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    assert conv_macs(tmp_path / "c.onnx") == (1, 8 * 4 * 4 * 27)


def test_make_slow_needs_32_channels_out_of_the_first_block():
    """A first block of another width cannot take the 32-channel identity layers; say so."""
    model = build_model("normal")
    model.features[0] = torch.nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError, match="features\\[0\\] with 32 output channels"):
        make_slow(model, 4)
    with pytest.raises(ValueError, match="at least one layer"):
        make_slow(build_model("normal"), 0)


def test_save_for_serving_writes_onnx_with_metadata_and_the_pytorch_model(tmp_path: Path):
    """model.onnx (metadata, same logits), model.pth (same module) and versions.txt."""
    import json

    import numpy as np
    import onnx
    import onnxruntime as ort

    model = build_model("normal").eval()
    path = save_for_serving(model, tmp_path / "out", "7")
    assert path == tmp_path / "out" / "model.onnx"
    assert (tmp_path / "out" / "versions.txt").read_text().strip() == "7"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list(CLASS_NAMES)
    assert meta["input_size"] == str(IMAGE_SIZE)
    x = torch.randn(3, 3, 64, 64)
    loaded = load_torch_model(tmp_path / "out" / "model.pth")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-4
    assert not loaded.training


def test_a_model_that_cannot_be_exported_raises_export_error(tmp_path: Path):
    """An exporter failure becomes ExportError (flow.py then registers nothing)."""

    class Spectral(torch.nn.Module):
        def forward(self, x):  # no ONNX operator for the FFT at opset 17
            return torch.fft.fft(x).real.mean((2, 3)).repeat(1, 4)[:, :11]

    model = Spectral()
    model.class_names, model.input_size = list(CLASS_NAMES), 8
    with pytest.raises(ExportError, match="ONNX export failed.*fft"):
        export_onnx(model, tmp_path / "model.onnx")


def test_load_torch_model_refuses_a_state_dict(tmp_path: Path):
    """A file holding weights only is not a model to fine-tune."""
    torch.save(build_model("normal").state_dict(), tmp_path / "weights.pth")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        load_torch_model(tmp_path / "weights.pth")


# ---- metrics and reports ---------------------------------------------------


def test_summarize_recall_and_confusion():
    """Per-class recall counts hits over each true class; the matrix has rows = truth."""
    import numpy as np

    truth = np.array([0, 0, 1, 1, 10])
    preds = np.array([0, 1, 1, 1, 0])
    out = summarize(truth, preds)
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["recall"]["Bread"] == 0.5 and out["recall"]["Dairy product"] == 1.0
    assert out["recall"]["Vegetable-Fruit"] == 0.0 and out["recall"]["Egg"] == 0.0
    assert out["confusion"][0][:2] == [1, 1] and out["confusion"][10][0] == 1


def test_parse_junit_counts_failures_errors_and_skips(tmp_path: Path):
    """passed = total - failed - skipped; failed includes errors."""
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
        '<testcase classname="tests.test_a" name="ok"/>'
        '<testcase classname="tests.test_a" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_b" name="boom"><error message="y"/></testcase>'
        '<testcase classname="tests.test_b" name="later"><skipped/></testcase>'
        "</testsuite></testsuites>")
    assert parse_junit(report) == (1, 2, 4, ["tests.test_a::bad", "tests.test_b::boom"])


def test_reachability_check_names_a_closed_port():
    """No server: MlflowUnreachable with the URI, from the check itself, not MLflow's retries."""
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(registry.MlflowUnreachable, match=f"{uri} is unreachable"):
        registry.check_reachable(uri)


def test_reachability_check_passes_on_a_live_server(mlflow_server):
    """A real server answers /health."""
    registry.check_reachable(mlflow_server.uri)
    registry.check_reachable("sqlite:///nowhere/mlflow.db")  # local stores need no server


def test_a_skipped_evaluation_test_is_not_a_pass():
    assert Evaluation(0, passed=8, failed=0, total=8).ok
    assert not Evaluation(0, passed=7, failed=0, total=8).ok  # one gate skipped
    assert not Evaluation(1, passed=7, failed=1, total=8).ok
    assert not Evaluation(0, passed=0, failed=0, total=0).ok


def test_a_required_gpu_that_is_missing_fails_before_any_run(tmp_path: Path, monkeypatch) -> None:
    """device=cuda (the workflow's gpu=true) never trains on the CPU by accident."""
    import flow
    from trainer import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only torch
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="sees no GPU.*CUDA training image"):
        pick_device("cuda")
    with pytest.raises(ConfigError, match="device must be one of"):
        load_config({"device": "tpu"}, env={})
    monkeypatch.setenv(config.ENV_NAMES["device"], "cuda")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # never reached
    version_file = tmp_path / "version"
    assert flow.main(["normal", "--version-file", str(version_file)]) == flow.EXIT_BAD_INPUT
    assert version_file.read_text() == ""


def test_training_twice_on_the_same_data_gives_the_same_model(tmp_path: Path):
    """Seeded from the first random weight on: a retrain of the same code is the same model."""
    from sample_data import make_sample_set
    from trainer import train_scenario

    data = make_sample_set(tmp_path / "data", 2, 1, 1, size=32)
    cfg = load_config({"data_dir": str(data), "weights": "none", "head_epochs": 0,
                       "finetune_epochs": 1, "image_size": 32}, env={})
    first, second = (train_scenario("normal", cfg).state_dict() for _ in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
