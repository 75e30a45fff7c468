"""Feature files for feature mode (SPEC §4): .npz, .mat (v5) and .h5, one dispatcher."""
import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax.data.features import load_feature_file
from dseh_jax.data.registry import load_dataset, load_feature_npz

FORMATS = (".npz", ".mat", ".h5")


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_loads_the_same_arrays(tmp_path, suffix):
  arrays = fx.feature_arrays(np.random.default_rng(0))
  path = str(tmp_path / f"f{suffix}")
  fx.write_feature_file(path, arrays)
  data = load_feature_file(path)
  for split in ("train", "query", "database"):
    s = getattr(data, split)
    np.testing.assert_array_equal(s.inputs, arrays[f"x_{split}"])
    np.testing.assert_array_equal(s.labels, arrays[f"y_{split}"].astype(np.float32))
    assert s.inputs.dtype == np.float32 and s.labels.dtype == np.float32
  np.testing.assert_array_equal(data.train.ids, np.arange(10))
  np.testing.assert_array_equal(data.query.ids, np.arange(10, 14))
  np.testing.assert_array_equal(data.database.ids, np.arange(14, 28))
  assert data.input_shape == (6,) and data.num_classes == 3


@pytest.mark.parametrize("suffix", FORMATS)
def test_ids_from_the_file_give_the_overlap_report(tmp_path, suffix):
  arrays = fx.feature_arrays(np.random.default_rng(1))
  arrays.update(ids_train=np.arange(100, 110), ids_query=np.arange(4),
                ids_database=np.concatenate([np.arange(100, 110), np.arange(200, 204)]))
  path = str(tmp_path / f"f{suffix}")
  fx.write_feature_file(path, arrays)
  data = load_feature_file(path)
  np.testing.assert_array_equal(data.database.ids, arrays["ids_database"])
  assert data.stats["overlaps"]["train&database"] == 10
  assert data.stats["overlaps"]["query&database"] == 0


def _bad(rng, field, value):
  arrays = fx.feature_arrays(rng)
  arrays[field] = value
  return arrays


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("field,value,message", [
    ("x_query", np.full((4, 6), np.inf, np.float32), "field 'x_query' holds NaN or infinite"),
    ("y_train", np.full((10, 3), 2.0), r"field 'y_train' must hold only 0 and 1; row 0 "
                                       r"column 0 is 2.0"),
    ("y_database", np.zeros((14, 4)), r"field 'y_database' has shape \(14, 4\); expected "
                                      r"\[14, 3\]"),
    ("x_database", np.zeros((14, 5), np.float32), "field 'x_database' has 5 columns; "
                                                  "expected 6"),
    ("x_train", np.zeros((10, 6), np.int32), "field 'x_train' has dtype int32; expected "
                                             "floats"),
    ("y_query", np.zeros((5, 3)), r"field 'y_query' has shape \(5, 3\); expected \[4, c\]"),
])
def test_bad_fields_name_file_and_field(tmp_path, suffix, field, value, message):
  path = str(tmp_path / f"bad{suffix}")
  fx.write_feature_file(path, _bad(np.random.default_rng(2), field, value))
  with pytest.raises(ValueError, match=message) as err:
    load_feature_file(path)
  assert f"bad{suffix}" in str(err.value)


def test_missing_field_unknown_suffix_and_partial_ids(tmp_path):
  arrays = fx.feature_arrays(np.random.default_rng(3))
  del arrays["y_query"]
  fx.write_feature_file(str(tmp_path / "m.mat"), arrays)
  with pytest.raises(ValueError, match=r"m.mat: missing field\(s\) \['y_query'\]"):
    load_feature_file(str(tmp_path / "m.mat"))
  with pytest.raises(ValueError, match=r"f.csv: unknown feature file suffix '.csv'"):
    load_feature_file(str(tmp_path / "f.csv"))
  arrays = fx.feature_arrays(np.random.default_rng(3))
  arrays["ids_train"] = np.arange(10)
  fx.write_feature_file(str(tmp_path / "p.h5"), arrays)
  with pytest.raises(ValueError, match=r"p.h5: has \['ids_train'\] but not all"):
    load_feature_file(str(tmp_path / "p.h5"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="junk.npz: cannot read as .npz"):
    load_feature_npz(str(tmp_path / "junk.npz"))


def test_registry_features_name_dispatches_and_features_npz_still_works(tmp_path):
  arrays = fx.feature_arrays(np.random.default_rng(4))
  fx.write_feature_file(str(tmp_path / "f.h5"), arrays)
  fx.write_feature_file(str(tmp_path / "f.npz"), arrays)
  a = load_dataset({"name": "features", "kwargs": {"path": str(tmp_path / "f.h5"),
                                                   "data_dir": ""}})
  b = load_dataset({"name": "features_npz", "kwargs": {"path": str(tmp_path / "f.npz")}})
  np.testing.assert_array_equal(a.query.inputs, arrays["x_query"])
  np.testing.assert_array_equal(b.query.inputs, arrays["x_query"])
