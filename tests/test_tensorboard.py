"""TensorBoard events: a short run's scalars, sample grids and config, read back with tensorboard's reader."""
import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from gen_jax import images
from gen_jax.training import tensorboard
from gen_jax.training.loop import train
from tests.test_loop import small_config


def read_events(logdir):
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0,
                                                                   event_accumulator.IMAGES: 0,
                                                                   event_accumulator.TENSORS: 0})
    return acc.Reload()


def test_run_writes_scalars_images_and_config(tmp_path):
    train(small_config(), str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    events = read_events(str(tmp_path / tensorboard.SUBDIR))

    expected = {}  # tag -> [(step, value)] from metrics.jsonl, train and eval rows alike
    for row in rows:
        for name, value in row.items():
            if name != "step":
                expected.setdefault(name, []).append((row["step"], value))
    assert "eval/neg_elbo" in expected and "loss" in expected
    assert set(events.Tags()["scalars"]) == set(expected)
    for name, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in points], name
        np.testing.assert_allclose([v for _, v in got], [v for _, v in points], rtol=1e-6, err_msg=name)

    assert {"samples/samples", "samples/reconstructions"} <= set(events.Tags()["images"])
    image = events.Images("samples/samples")[-1]
    assert image.step == 30
    assert (image.height, image.width) == images.enlarged_grid(np.zeros((64, 8, 8, 1)), min_cell=32).shape[:2]

    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads("\n".join(line[4:] for line in text.splitlines()))["model"]["latent_dim"] == 4


def test_resumed_run_keeps_one_value_per_step(tmp_path):
    train(small_config(**{"train.steps": 20}), str(tmp_path))
    train(small_config(), str(tmp_path))  # resumes at 20, runs to 30
    events = read_events(str(tmp_path / tensorboard.SUBDIR))
    assert [e.step for e in events.Scalars("loss")] == [10, 20, 30]


def test_without_tensorboardx_the_run_only_warns(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    with pytest.warns(UserWarning, match="pip install tensorboardX"):
        writer = tensorboard.Writer(str(tmp_path))
    writer.config(small_config())
    writer.scalars(1, {"loss": 1.0})
    writer.pictures(1, {"samples": np.zeros((4, 8, 8, 1))})
    writer.close()
    assert not (tmp_path / tensorboard.SUBDIR).exists()
