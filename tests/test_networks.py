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
