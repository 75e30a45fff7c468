"""pmap-ed train steps: sharding invariance, buffer semantics, CNN-F on two devices."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import models, optim
from dseh_jax import train_steps as ts

LAB_LOSS = dict(weights={"j1": 1.0, "j2": 1.0, "j3": 0.005, "j4": 1.0}, s=1.0, half=False,
                reduction="paper")
IMG_LOSS = dict(weights={"j1": 1.0, "j2": 1.0}, s=0.999, half=True, logit_scale=10.0,
                target_factor=0.999, reduction="code")


def _labels(rng, n, c):
  y = (rng.random((n, c)) < 0.35).astype(np.float32)
  y[np.arange(n), rng.integers(0, c, n)] = 1.0
  return y


def _labnet_setup(seed=0, n=24, c=5, bits=8):
  rng = np.random.default_rng(seed)
  model = models.LabNet(num_bits=bits, num_classes=c, hidden_units=64, semantic_units=16,
                        lrn=models.LRNParams(), label_activation="sigmoid")
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, c)))["params"]
  tx = optim.make_optimizer(name="adam", schedule=1e-2,
                            group_multipliers={"pretrained": 1.0, "new": 1.0}, clip=1.0)
  state = ts.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  labels = _labels(rng, n, c)
  bank = ts.PointBank(rng.standard_normal((n, 16)).astype(np.float32),
                      rng.standard_normal((n, bits)).astype(np.float32), labels)
  return state, bank, labels, rng


def _assert_trees_close(a, b, atol=1e-5, rtol=1e-5):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


def _run_sharded(step_fn, state, bank, batches, keys, **kw):
  p_step = ts.pmap_step(step_fn, **kw)
  state_r, bank_r = ts.replicate(state), ts.replicate(bank)
  for batch, key in zip(batches, keys):
    state_r, bank_r, metrics = p_step(state_r, bank_r, ts.shard_batch(batch, 2),
                                      np.broadcast_to(key, (2, 2)))
  # Replicas must agree exactly: every device applied the same update.
  for leaf in jax.tree_util.tree_leaves((state_r.params, bank_r)):
    np.testing.assert_array_equal(np.asarray(leaf[0]), np.asarray(leaf[1]))
  return ts.unreplicate(state_r), ts.unreplicate(bank_r), jax.device_get(metrics)


def _run_single(step_fn, state, bank, batches, keys, **kw):
  step = jax.jit(functools.partial(step_fn, axis_name=None, **kw))
  for batch, key in zip(batches, keys):
    state, bank, metrics = step(state, bank, batch, key)
  return state, bank, jax.device_get(metrics)


def test_two_devices_see_two_simulated_cpus():
  assert jax.local_device_count() == 2


def test_labnet_step_two_devices_equals_one_device():
  state, bank, labels, rng = _labnet_setup()
  batches = []
  for _ in range(3):
    idx = rng.choice(labels.shape[0], 8, replace=False).astype(np.int32)
    batches.append({"labels": labels[idx], "index": idx})
  keys = [np.asarray(jax.random.PRNGKey(i)) for i in range(3)]
  s2, b2, m2 = _run_sharded(ts.labnet_train_step, state, bank, batches, keys,
                            loss_kwargs=LAB_LOSS)
  s1, b1, m1 = _run_single(ts.labnet_train_step, state, bank, batches, keys,
                           loss_kwargs=LAB_LOSS)
  _assert_trees_close(s2.params, s1.params)
  _assert_trees_close(b2, b1)
  np.testing.assert_allclose(m2["loss"][0], m1["loss"], rtol=1e-5)
  # The update really moved the parameters.
  assert not np.allclose(np.asarray(s1.params["hidden"]["kernel"]),
                         np.asarray(state.params["hidden"]["kernel"]))


def _np_pairwise(a, b, sim):
  theta = a.astype(np.float64) @ b.astype(np.float64).T
  return np.mean(np.sum(np.logaddexp(0.0, theta) - sim * theta, axis=1))


def test_labnet_buffer_update_semantics():
  """Rows of the batch are overwritten with the current outputs before the loss (SPEC §3);
  all other rows stay; the loss compares the batch with the updated buffers."""
  state, bank, labels, _ = _labnet_setup(seed=3)
  idx = np.array([5, 0, 17, 9, 2, 11], np.int32)
  batch = {"labels": labels[idx], "index": idx}
  before = state.apply_fn({"params": state.params}, labels[idx])
  new_state, new_bank, metrics = _run_sharded(
      ts.labnet_train_step, state, bank, [batch], [np.zeros(2, np.uint32)],
      loss_kwargs=LAB_LOSS)
  expect_sem = np.array(bank.semantic)
  expect_sem[idx] = np.asarray(before.semantic)
  expect_codes = np.array(bank.codes)
  expect_codes[idx] = np.asarray(before.codes)
  np.testing.assert_allclose(np.asarray(new_bank.semantic), expect_sem, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new_bank.codes), expect_codes, atol=1e-6)
  untouched = np.setdiff1d(np.arange(labels.shape[0]), idx)
  np.testing.assert_array_equal(np.asarray(new_bank.codes)[untouched],
                                np.asarray(bank.codes)[untouched])
  # j1/j2 were computed against the *updated* buffers: check with float64 numpy.
  sim = (labels[idx].astype(np.float64) @ labels.T.astype(np.float64) > 0).astype(np.float64)
  j1 = _np_pairwise(np.asarray(before.semantic), expect_sem, sim)
  j2 = _np_pairwise(np.asarray(before.codes), expect_codes, sim)
  np.testing.assert_allclose(metrics["j1"][0], j1, rtol=1e-4)
  np.testing.assert_allclose(metrics["j2"][0], j2, rtol=1e-4)
  # Against the stale buffers the value would differ: the test can tell them apart.
  assert not np.isclose(_np_pairwise(np.asarray(before.codes), np.asarray(bank.codes), sim),
                        j2, rtol=1e-4)


def _imgnet_setup(backbone, shape, n=16, c=4, bits=8, seed=0):
  rng = np.random.default_rng(seed)
  model = models.ImgNet(num_bits=bits, backbone=backbone, semantic_units=32)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + shape))["params"]
  tx = optim.make_optimizer(name="sgd", momentum=0.9, schedule=1e-2,
                            group_multipliers={"pretrained": 1.0, "new": 10.0})
  state = ts.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  labels = _labels(rng, n, c)
  bank = ts.LabNetTargets(np.abs(rng.standard_normal((n, 32))).astype(np.float32),
                          (rng.random((n, bits)) < 0.5).astype(np.float32), labels)
  images = rng.random((n,) + shape).astype(np.float32)
  return state, bank, labels, images, rng


@pytest.mark.slow
def test_imgnet_step_with_dropout_and_flip_is_sharding_invariant():
  state, bank, labels, images, rng = _imgnet_setup(models.MINI_CNNF, (16, 16, 1))
  batches = []
  for _ in range(2):
    idx = rng.choice(labels.shape[0], 8, replace=False).astype(np.int32)
    batches.append({"inputs": images[idx], "labels": labels[idx], "index": idx})
  keys = [np.asarray(jax.random.PRNGKey(10 + i)) for i in range(2)]
  s2, b2, m2 = _run_sharded(ts.imgnet_train_step, state, bank, batches, keys,
                            loss_kwargs=IMG_LOSS, flip=True, max_shift=3)
  s1, b1, m1 = _run_single(ts.imgnet_train_step, state, bank, batches, keys,
                           loss_kwargs=IMG_LOSS, flip=True, max_shift=3)
  _assert_trees_close(s2.params, s1.params)
  _assert_trees_close(b2, b1)   # the ImgNet step leaves its targets alone
  np.testing.assert_array_equal(np.asarray(b1.targets), np.asarray(bank.targets))
  np.testing.assert_allclose(m2["bit_agreement"][0], m1["bit_agreement"], rtol=1e-6)


def test_group_rows_counts_distinct_rows_by_brute_force():
  rng = np.random.default_rng(4)
  labels = _labels(rng, 300, 3)                       # at most 8 distinct label sets
  kinds, which = np.unique(labels, axis=0, return_inverse=True)
  semantic = rng.standard_normal((len(kinds), 5)).astype(np.float32)[which.ravel()]
  semantic[7] = -0.0 * semantic[7]                    # bits differ from 0.0: own row
  rows, row_labels, counts = ts.group_rows(semantic, labels, multiple=16)
  assert rows.shape == (16, 5) and row_labels.shape == (16, 3) and counts.shape == (16,)
  want = {}
  for f, y in zip(semantic, labels):
    key = (f.tobytes(), y.tobytes())
    want[key] = want.get(key, 0) + 1
  got = {(f.tobytes(), y.tobytes()): c for f, y, c in zip(rows, row_labels, counts) if c}
  assert got == want
  assert counts.sum() == 300 and np.all(rows[counts == 0] == 0)
  assert ts.group_rows(semantic[:9], labels[:9], multiple=16) is None   # nothing saved


def test_imgnet_step_on_grouped_targets_equals_all_rows():
  """J1 over distinct LabNet rows with counts: the same step, one or two devices."""
  state, bank, labels, images, rng = _imgnet_setup(models.MINI_CNNF, (16, 16, 1), n=300)
  kinds, which = np.unique(labels, axis=0, return_inverse=True)
  semantic = np.asarray(bank.semantic[:len(kinds)])[which.ravel()]
  full = ts.LabNetTargets(semantic, bank.targets, labels)
  grouped = ts.LabNetTargets.grouped(semantic, bank.targets, labels)
  assert grouped.semantic.shape[0] == 128 and float(np.sum(grouped.counts)) == 300
  batches = []
  for _ in range(2):
    idx = rng.choice(300, 8, replace=False).astype(np.int32)
    batches.append({"inputs": images[idx], "labels": labels[idx], "index": idx})
  keys = [np.asarray(jax.random.PRNGKey(20 + i)) for i in range(2)]
  kw = dict(loss_kwargs=IMG_LOSS, flip=True)
  s_full, _, m_full = _run_single(ts.imgnet_train_step, state, full, batches, keys, **kw)
  s_grp, _, m_grp = _run_single(ts.imgnet_train_step, state, grouped, batches, keys, **kw)
  s_two, _, _ = _run_sharded(ts.imgnet_train_step, state, grouped, batches, keys, **kw)
  np.testing.assert_allclose(m_grp["j1"], m_full["j1"], rtol=1e-6)
  _assert_trees_close(s_grp.params, s_full.params)
  _assert_trees_close(s_two.params, s_full.params)


@pytest.mark.parametrize("donate", [False, True])
def test_one_device_step_equals_pmap_over_one_device(donate):
  """The single-device form of ``pmap_step`` (jit, no collectives, donated buffers) gives
  the numbers of ``jax.pmap`` over one device, with the same leading device axis; so does
  its ``unbatched`` form between ``drop_device_axis`` and ``add_device_axis``."""
  state, bank, labels, rng = _labnet_setup()
  batches = [{"labels": labels[i:i + 8], "index": np.arange(i, i + 8, dtype=np.int32),
              "inputs": labels[i:i + 8]} for i in (0, 8, 16)]
  key = np.asarray(jax.random.PRNGKey(1))[None]
  one = ts.one_device_step(ts.labnet_train_step, donate=donate, loss_kwargs=LAB_LOSS)
  pmapped = jax.pmap(functools.partial(ts.labnet_train_step, axis_name=ts.AXIS_NAME,
                                       loss_kwargs=LAB_LOSS),
                     axis_name=ts.AXIS_NAME, devices=jax.local_devices()[:1])
  outs = []
  for step in (pmapped, one, "unbatched"):
    state_r = ts.replicate(state, devices=jax.local_devices()[:1])
    bank_r = ts.replicate(bank, devices=jax.local_devices()[:1])
    if step == "unbatched":         # the epoch loop's form: the axis dropped once, re-added once
      state_r, bank_r = ts.drop_device_axis((state_r, bank_r))
      assert bank_r.semantic.shape == bank.semantic.shape
    for batch in batches:
      if step == "unbatched":
        state_r, bank_r, metrics = one.unbatched(state_r, bank_r, batch, key[0])
      else:
        state_r, bank_r, metrics = step(state_r, bank_r, ts.shard_batch(batch, 1), key)
    if step == "unbatched":
      state_r, bank_r, metrics = ts.add_device_axis((state_r, bank_r, metrics))
    assert metrics["loss"].shape == (1,) and bank_r.semantic.shape == (1,) + bank.semantic.shape
    outs.append(jax.device_get((state_r.params, bank_r, metrics)))
  for other in outs[1:]:
    for x, y in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(other)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_random_shift_is_a_reflect_padded_window():
  images = np.random.default_rng(0).normal(size=(6, 5, 7, 2)).astype(np.float32)
  keys = jax.random.split(jax.random.PRNGKey(3), 6)
  out = np.asarray(ts.random_shift(jnp.asarray(images), keys, 2))
  seen = set()
  for img, got in zip(images, out):
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    windows = [(dy, dx) for dy in range(5) for dx in range(5)
               if np.array_equal(padded[dy:dy + 5, dx:dx + 7], got)]
    assert windows, "the output is no window of the padded image"
    seen.add(windows[0])
  assert len(seen) > 1   # offsets differ between examples
  np.testing.assert_array_equal(ts.random_shift(jnp.asarray(images), keys, 0), images)
  with pytest.raises(ValueError, match="random_shift needs"):
    ts.random_shift(jnp.zeros((2, 8)), keys[:2], 1)


@pytest.mark.slow
def test_imgnet_step_cnnf_224_on_two_devices():
  state, bank, labels, images, _ = _imgnet_setup(models.CNNF, (224, 224, 3), n=4)
  idx = np.array([3, 1], np.int32)
  batch = {"inputs": images[idx], "labels": labels[idx], "index": idx}
  new_state, _, metrics = _run_sharded(ts.imgnet_train_step, state, bank, [batch],
                                       [np.asarray(jax.random.PRNGKey(0))],
                                       loss_kwargs=IMG_LOSS, flip=True)
  assert int(new_state.step) == 1
  assert np.isfinite(metrics["loss"][0])
  for group in ("backbone", "head"):
    moved = [not np.allclose(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree_util.tree_leaves(new_state.params[group]),
        jax.tree_util.tree_leaves(state.params[group]))]
    assert any(moved), group


def test_batch_not_divisible_by_devices_is_a_clear_error():
  with pytest.raises(ValueError, match="7 rows.*2 devices"):
    ts.shard_batch({"labels": np.zeros((7, 3)), "index": np.arange(7)}, 2)


def test_predict_in_batches_pads_and_keeps_every_row():
  state, _, labels, _ = _labnet_setup(n=13)
  p_predict = ts.make_predict_fn(state.apply_fn)
  out = ts.predict_in_batches(p_predict, ts.replicate(state.params), labels, 4, 2)
  direct = state.apply_fn({"params": state.params}, labels)
  assert out.codes.shape == (13, 8)
  np.testing.assert_allclose(out.codes, np.asarray(direct.codes), atol=1e-6)
  np.testing.assert_allclose(out.semantic, np.asarray(direct.semantic), atol=1e-5)
