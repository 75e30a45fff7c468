"""``load_dataset`` on image layouts: lazy ImageArray inputs, seeding, options, validation."""
import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax import configs
from dseh_jax.data.registry import load_dataset
from dseh_jax.data.splits import RetrievalData, Split, validate_split
from dseh_jax.input_pipeline import ImageArray


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
  rng = np.random.default_rng(0)
  roots = {k: str(tmp_path_factory.mktemp(k))
           for k in ("nus", "coco", "ilsvrc", "lists", "h5")}
  fx.write_nus_wide(roots["nus"], rng, num_images=120, tie=False)
  fx.write_coco(roots["coco"], rng)
  fx.write_imagenet(roots["ilsvrc"], rng)
  fx.write_list_files(roots["lists"], rng)
  fx.write_hdf5_layout(roots["h5"], rng)
  return roots


CASES = {
    "nus_wide21": ("nus", {"num_classes": 5, "query_per_class": 2, "train_per_class": 3}),
    "coco": ("coco", {"num_query": 5, "num_train": 8}),
    "imagenet100": ("ilsvrc", {"num_classes": 3, "query_per_class": 2, "train_per_class": 3}),
    "list_files": ("lists", {}),
    "hdf5_layout": ("h5", {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_image_datasets_have_lazy_image_inputs(trees, name):
  root, kwargs = CASES[name]
  config = {"name": name, "kwargs": {"data_dir": trees[root], **kwargs},
            "image_size": 24, "resize_to": 32, "mean": "none"}
  data = load_dataset(config, seed=3)
  for split in (data.train, data.query, data.database):
    assert isinstance(split.inputs, ImageArray)
    assert split.inputs.shape == (len(split), 24, 24, 3)
  x = data.train.inputs[np.array([1, 0])]
  assert x.shape == (2, 24, 24, 3) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 255.0          # mean "none": raw pixel values


@pytest.mark.parametrize("name", ["nus_wide21", "coco", "imagenet100"])
def test_run_seed_drives_the_protocol_and_kwargs_seed_wins(trees, name):
  root, kwargs = CASES[name]
  config = {"name": name, "kwargs": {"data_dir": trees[root], **kwargs}}
  a, b = load_dataset(config, seed=1), load_dataset(config, seed=1)
  np.testing.assert_array_equal(a.query.ids, b.query.ids)
  others = [load_dataset(config, seed=s).query.ids for s in (2, 3, 4)]
  assert any(set(o.tolist()) != set(a.query.ids.tolist()) for o in others)
  pinned = {"name": name, "kwargs": {"data_dir": trees[root], "seed": 1, **kwargs}}
  np.testing.assert_array_equal(load_dataset(pinned, seed=9).query.ids, a.query.ids)


def test_unknown_option_lists_the_options(trees):
  config = {"name": "coco", "kwargs": {"data_dir": trees["coco"], "query_per_class": 2}}
  with pytest.raises(ValueError, match=r"\['query_per_class'\] are not options of dataset "
                                       r"'coco'; expected some of \[.*'num_query'"):
    load_dataset(config)


def test_real_configs_carry_the_preprocessing_fields():
  for name in ("nuswide21", "coco", "imagenet100"):
    c = configs.get_config(name)
    assert (c.data.image_size, c.data.resize_to, c.data.mean) == (224, 0, "vgg_f")
    assert c.data.kwargs.data_dir == ""


class _Lazy:
  """An array-like that must never be decoded whole."""
  shape = (3, 4, 4, 3)
  dtype = np.dtype(np.float32)

  def __len__(self):
    return 3

  def __array__(self, *args, **kwargs):
    raise AssertionError("validation decoded the lazy inputs")


def test_validate_split_checks_lazy_inputs_by_shape_only():
  labels = np.eye(3, dtype=np.float32)
  split = Split(_Lazy(), labels, np.arange(3, dtype=np.int64))
  validate_split(split, "lazy", 3, (4, 4, 3))
  with pytest.raises(ValueError, match=r"lazy: field 'inputs' has item shape \(4, 4, 3\); "
                                       r"expected \(8, 8, 3\)"):
    validate_split(split, "lazy", 3, (8, 8, 3))
  with pytest.raises(ValueError, match="field 'inputs' has 3 rows; expected 2"):
    validate_split(Split(_Lazy(), labels[:2], np.arange(2)), "lazy", 3, (4, 4, 3))
  with pytest.raises(ValueError, match="field 'ids' has shape .* expected \\(3,\\) integers"):
    validate_split(Split(_Lazy(), labels, np.zeros(3, np.float32)), "lazy", 3, (4, 4, 3))
  # numpy inputs keep the value checks.
  bad = np.full((3, 4, 4, 3), np.nan, np.float32)
  with pytest.raises(ValueError, match="NaN"):
    RetrievalData("x", *(Split(bad, labels, np.arange(3)),) * 3, ("a", "b", "c")).validate()


def test_mean_accepts_numbers_written_as_text():
  """``--set data.mean=…`` arrives as text; three comma-separated numbers are a mean."""
  from dseh_jax.data.listing import resolve_mean  # pylint: disable=import-outside-toplevel
  np.testing.assert_array_equal(resolve_mean("1.5,2,3"), np.float32([1.5, 2, 3]))
  np.testing.assert_array_equal(resolve_mean("(1, 2, 3)"), np.float32([1, 2, 3]))
  np.testing.assert_array_equal(resolve_mean("none"), np.zeros(3, np.float32))
  with pytest.raises(ValueError, match="data.mean='1,x,3'"):
    resolve_mean("1,x,3")
  with pytest.raises(ValueError, match="3 finite numbers"):
    resolve_mean("1,2")
