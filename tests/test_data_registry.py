"""Dataset registry: the features-file loader and its errors; feature-mode training."""
import numpy as np
import pytest

from dseh_jax import configs
from dseh_jax.data.registry import load_dataset, load_feature_npz
from dseh_jax.train import DSEHTrainer


def _write_features(path, rng, d=12, c=4, **replace):
  arrays = {}
  for split, n in (("train", 32), ("query", 8), ("database", 40)):
    y = (rng.random((n, c)) < 0.4).astype(np.float32)
    y[np.arange(n), rng.integers(0, c, n)] = 1
    arrays[f"x_{split}"] = rng.standard_normal((n, d)).astype(np.float32)
    arrays[f"y_{split}"] = y
  arrays.update(replace)
  np.savez(path, **arrays)
  return arrays


def test_feature_npz_loads_every_split(tmp_path):
  arrays = _write_features(tmp_path / "f.npz", np.random.default_rng(0))
  data = load_feature_npz(str(tmp_path / "f.npz"))
  np.testing.assert_array_equal(data.query.inputs, arrays["x_query"])
  np.testing.assert_array_equal(data.database.labels, arrays["y_database"])
  assert data.num_classes == 4 and data.input_shape == (12,)
  ids = np.concatenate([data.train.ids, data.query.ids, data.database.ids])
  assert len(np.unique(ids)) == len(ids)


@pytest.mark.parametrize("field,value,message", [
    ("y_query", np.full((8, 3), 1.0, np.float32), "y_query|labels.*expected \\[n, 4\\]"),
    ("x_train", np.full((32, 12), np.nan, np.float32), "NaN"),
    ("y_train", np.full((32, 4), 0.5, np.float32), "only 0 and 1"),
    ("x_database", np.zeros((39, 12), np.float32), "40"),
])
def test_feature_npz_rejects_bad_fields_naming_file_and_field(tmp_path, field, value, message):
  path = tmp_path / "bad.npz"
  _write_features(path, np.random.default_rng(1), **{field: value})
  with pytest.raises(ValueError, match=message) as err:
    load_feature_npz(str(path))
  assert "bad.npz" in str(err.value)


def test_feature_npz_missing_field(tmp_path):
  np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="missing field.*y_train"):
    load_feature_npz(str(tmp_path / "m.npz"))


def test_unknown_dataset_says_what_is_available():
  with pytest.raises(ValueError, match="digits_mosaic.*features_npz.*nus_wide21.*tfds"):
    load_dataset({"name": "no_such_set", "kwargs": {}})


def test_image_dataset_without_data_dir_says_so():
  with pytest.raises(ValueError, match="nus_wide21.*data_dir"):
    load_dataset({"name": "nus_wide21", "kwargs": {}})


def test_feature_mode_training_runs(tmp_path):
  _write_features(tmp_path / "f.npz", np.random.default_rng(2))
  c = configs.get_config("nuswide21", "code")
  c.data.name = "features_npz"
  c.data.kwargs.path = str(tmp_path / "f.npz")
  c.imgnet.backbone = "none"
  c.labnet.hidden_units = 32
  c.labnet.semantic_units = c.imgnet.semantic_units = 8
  c.labnet.batch_size = c.imgnet.batch_size = 8
  c.labnet.epochs_per_round = c.imgnet.epochs_per_round = (1,)
  c.eval.top_k = 10
  c.on_collapse = "warn"           # one epoch each: a smoke run, not a converged one
  data = load_dataset(c.data)
  result = DSEHTrainer(c, data, 8, str(tmp_path / "run"), progress=False).run()
  assert result.query_codes.shape == (8, 8) and result.database_codes.shape == (40, 8)
  assert 0.0 <= result.metrics["map@10"] <= 1.0
