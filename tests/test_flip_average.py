"""Flip-averaged final codes (``imgnet.flip_average_codes``): the forward pass averages the
outputs of an image and its mirror, and only the final codes change, not the training."""
import jax
import numpy as np
import pytest

from dseh_jax import models, prediction
from dseh_jax.checkpointing import RunCheckpointer
from dseh_jax import train_steps as ts
from dseh_jax.data.registry import load_dataset
from dseh_jax.trainer import Trainer
from test_trainer import tiny_config


def test_flip_averaged_pass_is_the_mean_of_both_passes():
  net = models.ImgNet(num_bits=8, backbone=models.MINI_CNNF, semantic_units=16)
  images = np.random.default_rng(0).random((6, 16, 16, 3)).astype(np.float32)
  params = net.init(jax.random.PRNGKey(0), images[:1])["params"]
  plain = lambda x: np.asarray(net.apply({"params": params}, x).hash_logits, np.float64)
  want = (plain(images) + plain(images[:, :, ::-1, :].copy())) / 2
  fn = prediction.make_predict_fn(net.apply, flip_average=True)
  got = prediction.predict_in_batches(fn, ts.replicate(params), images, 4,
                                      jax.local_device_count()).hash_logits
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(got, plain(images), atol=1e-4)       # the mirror does count


@pytest.mark.slow
def test_flip_average_changes_only_the_final_codes(tmp_path):
  """Same training either way; the final codes are the signs of the flip-averaged (or
  plain) logits of the last checkpoint's ImgNet, recomputed here."""
  runs, data = {}, None
  for flag in (False, True):
    config = tiny_config()
    config.imgnet.flip_average_codes = flag
    data = load_dataset(config.data)
    trainer = Trainer(config, data, 8, str(tmp_path / str(flag)), progress=False)
    runs[flag] = trainer.run()
    _, params, _ = RunCheckpointer(str(tmp_path / str(flag) / "checkpoints")
                                   ).restore_latest_params("imgnet", trainer.states["imgnet"].params)
    fn = prediction.make_predict_fn(trainer.states["imgnet"].apply_fn, flip_average=flag)
    logits = prediction.predict_in_batches(fn, ts.replicate(params), data.database.inputs, 32,
                                           jax.local_device_count()).hash_logits
    np.testing.assert_array_equal(runs[flag].database_codes, np.where(logits >= 0, 1, -1))
  epochs = [[h["loss"] for h in runs[f].history if h["kind"] == "epoch"] for f in (False, True)]
  assert epochs[0] == epochs[1]


def test_flip_averaged_codes_are_the_recipe_of_photo_configs_only():
  from dseh_jax import configs  # pylint: disable=import-outside-toplevel
  for name in configs.NAMES:
    for choices in ("recipe", "paper", "code"):
      photos = name not in ("digits", "digits_single") and choices == "recipe"
      assert configs.get_config(name, choices).imgnet.flip_average_codes == photos, (name, choices)
