"""networks: the compiled ``init`` gives the same parameters as Flax's eager ``init``."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dseh_jax import models, networks


def _assert_same_leaves(got, want):
  got_leaves, got_tree = jax.tree_util.tree_flatten(got)
  want_leaves, want_tree = jax.tree_util.tree_flatten(want)
  assert got_tree == want_tree
  for g, w in zip(got_leaves, want_leaves):
    assert g.dtype == w.dtype and g.shape == w.shape
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("model, shape", [
    (models.LabNet(num_bits=8, num_classes=5, hidden_units=32, semantic_units=16), (1, 5)),
    (models.ImgNet(num_bits=8, backbone=models.MINI_CNNF, semantic_units=16), (1, 16, 16, 3)),
    (models.ImgNet(num_bits=8, backbone=None, semantic_units=16), (1, 12)),
])
def test_init_params_is_eager_init_leaf_by_leaf(model, shape):
  key = jax.random.PRNGKey(3)
  eager = model.init(key, jnp.zeros(shape, jnp.float32))["params"]
  _assert_same_leaves(networks.init_params(model, key, shape), eager)


def test_new_state_is_train_state_create():
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
  got = networks.new_state(lambda *a: None, params, tx)
  want = networks.ts.TrainState.create(apply_fn=lambda *a: None, params=params, tx=tx)
  assert int(got.step) == int(want.step) == 0
  _assert_same_leaves(got.opt_state, want.opt_state)
  _assert_same_leaves(got.params, want.params)


def _first_update(config):
  state = networks.create_imgnet_state(config, (12,), 8, 64, jax.random.PRNGKey(0))
  grads = jax.tree_util.tree_map(jnp.ones_like, state.params)
  updates, _ = state.tx.update(grads, state.opt_state, state.params)
  return updates


def test_method_lr_scale_multiplies_the_schedule_and_the_optimiser_steps():
  from dseh_jax import methods
  from test_trainer import tiny_config
  config = methods.configure(tiny_config(), "hashnet")
  config.imgnet.backbone = "none"
  assert networks.method_lr_scale(config) == 1.0
  assert networks.method_lr_scale(tiny_config()) == 1.0            # DSEH: no section field
  base = _first_update(config)
  base_lr = float(networks.make_schedule(config.imgnet, 64, networks.IMGNET)(0))
  config.hashnet.lr_scale = 0.25
  assert networks.method_lr_scale(config) == 0.25
  scaled_lr = float(networks.make_schedule(config.imgnet, 64, networks.IMGNET,
                                           networks.method_lr_scale(config))(0))
  np.testing.assert_allclose(scaled_lr, 0.25 * base_lr, rtol=1e-7)
  for b, s in zip(jax.tree_util.tree_leaves(base),
                  jax.tree_util.tree_leaves(_first_update(config))):
    np.testing.assert_allclose(np.asarray(s), 0.25 * np.asarray(b), rtol=1e-6, atol=1e-12)
