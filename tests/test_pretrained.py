"""MatConvNet ``imagenet-vgg-f.mat`` → Flax CNN-F (SPEC §4), checked against an
independent float64 numpy forward pass written from MatConvNet's layer definitions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from dseh_jax import models, pretrained
from dseh_jax.configs import get_config
from dseh_jax.networks import create_imgnet_state
from fixtures_vggf import (SMALL_CONV_FEATURES, SMALL_FC_UNITS, find_layer,
                           make_vggf_layers, mcn_forward, write_vggf_mat)

SMALL_SPEC = pretrained.scaled_spec(models.CNNF, SMALL_CONV_FEATURES, SMALL_FC_UNITS)


def flax_fc7(spec, params, image):
  out = models.ConvBackbone(spec).apply({"params": params}, jnp.asarray(image[None]))
  return np.asarray(out[0], np.float64)


def assert_close_relative(got, want, tol=1e-4):
  scale = np.max(np.abs(want))
  assert scale > 0
  err = np.max(np.abs(got - want)) / scale
  assert err <= tol, f"relative error {err:.3g} > {tol}"


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def full_vggf(tmp_path_factory):
  rng = np.random.default_rng(7)
  layers = make_vggf_layers(rng)
  average = rng.uniform(90, 130, (224, 224, 3)).astype(np.float32)
  path = tmp_path_factory.mktemp("vggf") / "imagenet-vgg-f.mat"
  write_vggf_mat(path, layers, layout="new", average_image=average)
  return path, layers, average


def small_file(tmp_path, layout="new", edit=None, seed=0, average=None):
  layers = make_vggf_layers(np.random.default_rng(seed), SMALL_CONV_FEATURES,
                            SMALL_FC_UNITS)
  if edit is not None:
    edit(layers)
  path = tmp_path / f"vggf_{layout}.mat"
  write_vggf_mat(path, layers, layout=layout, average_image=average)
  return path, layers


# --------------------------------------------------------------------------- tests

def test_full_cnnf_fc7_matches_numpy_matconvnet_forward(full_vggf):
  path, layers, average = full_vggf
  loaded = pretrained.load_vggf(path)
  image = np.random.default_rng(1).uniform(-120, 120, (224, 224, 3)).astype(np.float32)
  want = mcn_forward(layers, image)
  assert want.shape == (1, 1, 4096)
  assert_close_relative(flax_fc7(models.CNNF, loaded.params, image), want.reshape(-1))
  np.testing.assert_array_equal(loaded.average_image, average)
  assert loaded.image_size == (224, 224)


def test_full_cnnf_params_have_the_flax_tree_shapes(full_vggf):
  path, layers, _ = full_vggf
  loaded = pretrained.load_vggf(path)
  init = jax.eval_shape(models.ConvBackbone(models.CNNF).init, jax.random.PRNGKey(0),
                        jnp.zeros((1, 224, 224, 3)))["params"]
  assert jax.tree_util.tree_map(lambda a: a.shape, loaded.params) == \
      jax.tree_util.tree_map(lambda a: a.shape, init)
  # conv1 kernels are copied as stored (HWIO, no flip / transpose).
  np.testing.assert_array_equal(loaded.params["conv1"]["kernel"],
                                find_layer(layers, "conv1")["W"])


@pytest.mark.parametrize("layout", ["new", "net", "old"])
def test_small_network_round_trip_in_every_layout(tmp_path, layout):
  average = np.random.default_rng(3).uniform(0, 255, (224, 224, 3)).astype(np.float32)
  path, layers = small_file(tmp_path, layout, average=average)
  loaded = pretrained.load_vggf(path, SMALL_SPEC)
  for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc7"):
    w = find_layer(layers, name)["W"]
    np.testing.assert_array_equal(loaded.params[name]["kernel"].reshape(w.shape), w)
    np.testing.assert_array_equal(loaded.params[name]["bias"], find_layer(layers, name)["b"])
  # fc6: Dense row (i * 6 + j) * C + c holds W[i, j, c, :] (HWC flattening).
  w6 = find_layer(layers, "fc6")["W"]
  i, j, c = 4, 1, 7
  np.testing.assert_array_equal(loaded.params["fc6"]["kernel"][(i * 6 + j) * w6.shape[2] + c],
                                w6[i, j, c])
  np.testing.assert_array_equal(loaded.average_image, average)
  image = np.random.default_rng(2).uniform(-120, 120, (224, 224, 3)).astype(np.float32)
  assert_close_relative(flax_fc7(SMALL_SPEC, loaded.params, image),
                        mcn_forward(layers, image).reshape(-1))


def test_without_normalization_average_is_none_and_dropout_layers_are_skipped(tmp_path):
  def add_dropout(layers):
    at = layers.index(find_layer(layers, "relu6")) + 1
    layers.insert(at, {"name": "drop6", "type": "dropout"})
  path, _ = small_file(tmp_path, edit=add_dropout)
  loaded = pretrained.load_vggf(path, SMALL_SPEC)
  assert loaded.average_image is None
  assert set(loaded.params) == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"}


def _set(name, key, value):
  def edit(layers):
    find_layer(layers, name)[key] = value
  return edit


def _drop(*names):
  def edit(layers):
    for name in names:
      layers.remove(find_layer(layers, name))
  return edit


def _rename(name, new):
  return _set(name, "name", new)


@pytest.mark.parametrize("edit, message", [
    (_set("conv2", "W", np.zeros((3, 3, 8, 16), np.float32)), r"'conv2'.*\(3, 3, 8, 16\)"),
    (_set("conv3", "b", np.zeros(5, np.float32)), r"'conv3'.*biases have 5"),
    (_set("conv1", "stride", (2, 2)), r"'conv1'.*stride \(2, 2\)"),
    (_set("conv2", "pad", (1, 1, 1, 1)), r"'conv2'.*pad \(1, 1, 1, 1\)"),
    (_set("norm1", "param", (5.0, 2.0, 2e-5, 0.75)), r"'norm1'.*not divided by N"),
    (_set("norm2", "param", (3.0, 2.0, 1e-4, 0.75)), r"'norm2'.*LRN param"),
    (_set("pool1", "pad", (0, 0, 0, 0)), r"'pool1'.*pad \(0, 0, 0, 0\)"),
    (_set("pool5", "method", "avg"), r"'pool5'.*'avg'"),
    (_drop("norm2"), r"'pool2'.*type 'pool'.*'lrn'"),
    (_drop("conv4", "relu4"), r"'conv5'.*expected the layer named 'conv4'"),
    (_rename("fc7", "fc_7"), r"'fc_7'.*expected the layer named 'fc7'"),
    (_set("fc6", "W", np.zeros((5, 5, 12, 24), np.float32)), r"'fc6'.*\(5, 5, 12, 24\)"),
])
def test_layer_mismatches_name_the_layer(tmp_path, edit, message):
  path, _ = small_file(tmp_path, edit=edit)
  with pytest.raises(ValueError, match=message):
    pretrained.load_vggf(path, SMALL_SPEC)


def test_wrong_widths_and_unreadable_files_are_clear_errors(tmp_path):
  path, _ = small_file(tmp_path)
  with pytest.raises(ValueError, match=r"'conv1'.*\(11, 11, 3, 64\)"):
    pretrained.load_vggf(path, models.CNNF)
  bad = tmp_path / "broken.mat"
  bad.write_bytes(b"not a mat file at all")
  with pytest.raises(ValueError, match="broken.mat: cannot read"):
    pretrained.load_vggf(bad)
  empty = tmp_path / "empty.mat"
  scipy.io.savemat(str(empty), {"x": np.zeros(3)})
  with pytest.raises(ValueError, match="empty.mat: no 'layers'"):
    pretrained.load_vggf(empty)
  with pytest.raises(ValueError, match=r"'fc6'"):
    pretrained.load_vggf(path, SMALL_SPEC, image_size=192)


def _imgnet_config(path, backbone="cnnf"):
  c = get_config("digits")
  c.imgnet.backbone = backbone
  c.imgnet.pretrained_weights = str(path)
  c.imgnet.semantic_units = 16
  return c


def test_create_imgnet_state_loads_the_backbone(tmp_path, monkeypatch):
  monkeypatch.setitem(models.BACKBONES, "cnnf", SMALL_SPEC)   # a narrow CNN-F: fast
  path, layers = small_file(tmp_path)
  state = create_imgnet_state(_imgnet_config(path), (224, 224, 3), 8, 256,
                              jax.random.PRNGKey(0))
  np.testing.assert_array_equal(np.asarray(state.params["backbone"]["conv2"]["kernel"]),
                                find_layer(layers, "conv2")["W"])
  np.testing.assert_array_equal(np.asarray(state.params["backbone"]["fc7"]["bias"]),
                                find_layer(layers, "fc7")["b"])
  assert state.params["head"]["hash"]["kernel"].shape == (16, 8)


def test_create_imgnet_state_rejects_weights_for_other_backbones(tmp_path):
  path, _ = small_file(tmp_path)
  with pytest.raises(ValueError, match="only 'cnnf' has ImageNet weights"):
    create_imgnet_state(_imgnet_config(path, "mini_cnnf"), (16, 16, 3), 8, 256,
                        jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"needs square \[H, W, 3\] image inputs"):
    create_imgnet_state(_imgnet_config(path, "cnnf"), (32, 16, 3), 8, 256,
                        jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"width 4096: set imgnet.backbone=none"):
    create_imgnet_state(_imgnet_config(path, "cnnf"), (4096,), 8, 256, jax.random.PRNGKey(0))


def test_images_get_the_weights_average_image_when_weights_are_given(tmp_path):
  """SPEC §4: with ``imgnet.pretrained_weights`` the file's averageImage replaces the
  published mean; without weights (or with another data.mean) the data is unchanged."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from dseh_jax.data.splits import RetrievalData, Split  # pylint: disable=import-outside-toplevel
  from dseh_jax.input_pipeline import (FileBytes, ImageArray,  # pylint: disable=import-outside-toplevel
                                       VGG_F_RGB_MEAN)
  from dseh_jax.networks import use_weights_mean  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(3)
  names = []
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    names.append(f"{i}.png")
  average = rng.uniform(90, 130, (8, 8, 3)).astype(np.float32)
  path, _ = small_file(tmp_path, average=average)
  split = Split(ImageArray(FileBytes(str(tmp_path), names), image_size=8),
                np.eye(3, dtype=np.float32), np.arange(3))
  data = RetrievalData("tiny", split, split, split, ("a", "b", "c"))
  raw = np.stack([np.asarray(Image.open(tmp_path / n).convert("RGB"), np.float32)
                  for n in names])
  np.testing.assert_allclose(data.query.inputs[:], raw - np.asarray(VGG_F_RGB_MEAN), atol=1e-4)
  config = _imgnet_config(path)
  config.data.mean = "vgg_f"
  got = use_weights_mean(config, data)
  for s in (got.train, got.query, got.database):
    np.testing.assert_allclose(s.inputs[:], raw - average, atol=1e-4)
  config.data.mean = "none"
  assert use_weights_mean(config, data) is data
  config.data.mean = "vgg_f"
  config.imgnet.pretrained_weights = ""
  assert use_weights_mean(config, data) is data
