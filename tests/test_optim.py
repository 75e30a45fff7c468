"""Tests for dseh_jax.optim: parameter groups, multipliers, clipping, schedule (SPEC §5)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dseh_jax import models, optim


@pytest.fixture(scope="module")
def imgnet_params():
  """Real ImgNet parameters: ``backbone`` (pretrained) and ``head`` (new) subtrees."""
  model = models.ImgNet(num_bits=8, backbone=models.MINI_CNNF)
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1), jnp.float32))["params"]


def hand_params():
  """A small hand-made tree with a backbone, a head and another top-level layer."""
  return {
      "backbone": {"conv1": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros((3,))},
                   "fc6": {"kernel": jnp.ones((3, 4))}},
      "head": {"semantic": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros((2,))},
               "hash": {"kernel": jnp.ones((2, 5))}},
      "extra": jnp.zeros((2,)),
  }


def split_by_top_key(tree):
  """``{top_key: [leaves]}`` from a nested dict."""
  return {k: jax.tree_util.tree_leaves(v) for k, v in tree.items()}


def one_update(opt, params, grads):
  state = opt.init(params)
  updates, _ = opt.update(grads, state, params)
  return updates


# --------------------------------------------------------------------------- labels

@pytest.mark.parametrize("which", ["real", "hand"])
def test_param_group_labels(which, imgnet_params):
  """Every backbone leaf is "pretrained", every other leaf "new"."""
  params = imgnet_params if which == "real" else hand_params()
  labels = optim.param_group_labels(params)
  assert (jax.tree_util.tree_structure(labels) == jax.tree_util.tree_structure(params))
  by_key = split_by_top_key(labels)
  assert "backbone" in by_key and "head" in by_key
  for key, leaves in by_key.items():
    want = "pretrained" if key == "backbone" else "new"
    assert leaves and all(lab == want for lab in leaves), (key, leaves)


def test_param_group_labels_feature_mode_all_new():
  """Feature-mode ImgNet (no backbone) has only new layers."""
  model = models.ImgNet(num_bits=8, backbone=None, semantic_units=16)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12), jnp.float32))["params"]
  labels = jax.tree_util.tree_leaves(optim.param_group_labels(params))
  assert labels and all(lab == "new" for lab in labels)


# --------------------------------------------------------------------------- multipliers

def test_sgd_new_layers_get_ten_times_the_update(imgnet_params):
  """Paper multipliers (1, 10), equal gradients 0.25, lr 0.5: updates −0.125 and −1.25."""
  opt = optim.make_optimizer(name="sgd", momentum=0.0, schedule=0.5,
                             group_multipliers={"pretrained": 1.0, "new": 10.0})
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.25), imgnet_params)
  upd = split_by_top_key(one_update(opt, imgnet_params, grads))
  pre = np.concatenate([np.ravel(x) for x in upd["backbone"]])
  new = np.concatenate([np.ravel(x) for x in upd["head"]])
  np.testing.assert_array_equal(pre, np.full_like(pre, -0.5 * 1.0 * 0.25))
  np.testing.assert_array_equal(new, np.full_like(new, -0.5 * 10.0 * 0.25))
  np.testing.assert_array_equal(new, np.full_like(new, 10.0 * pre[0]))


def test_sgd_code_multipliers_ratio_ten(imgnet_params):
  """Code multipliers (0.1, 1): new/pretrained update ratio is 10, values −lr·mult·g."""
  lr, g = 1e-3, 0.25
  opt = optim.make_optimizer(name="sgd", momentum=0.0, schedule=lr,
                             group_multipliers={"pretrained": 0.1, "new": 1.0})
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, g), imgnet_params)
  upd = split_by_top_key(one_update(opt, imgnet_params, grads))
  pre = np.concatenate([np.ravel(x) for x in upd["backbone"]])
  new = np.concatenate([np.ravel(x) for x in upd["head"]])
  np.testing.assert_allclose(pre, -lr * 0.1 * g, rtol=1e-6)
  np.testing.assert_allclose(new, -lr * 1.0 * g, rtol=1e-6)
  np.testing.assert_allclose(new.mean() / pre.mean(), 10.0, rtol=1e-6)


def test_adam_ratio_ten_over_several_steps(imgnet_params):
  """Adam with equal gradients: the new layers move 10× as far at every step."""
  lr = 1e-3
  opt = optim.make_optimizer(name="adam", schedule=lr,
                             group_multipliers={"pretrained": 0.1, "new": 1.0})
  params = imgnet_params
  state = opt.init(params)
  for step in range(3):
    g = 0.25 * (step + 1)
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, g), params)
    updates, state = opt.update(grads, state, params)
    upd = split_by_top_key(updates)
    pre = np.concatenate([np.ravel(x) for x in upd["backbone"]]).astype(np.float64)
    new = np.concatenate([np.ravel(x) for x in upd["head"]]).astype(np.float64)
    # Scalar float64 Adam on the gradient sequence g_1..g_t (equal for every leaf).
    gs = [0.25 * (t + 1) for t in range(step + 1)]
    m = v = 0.0
    for gt in gs:
      m = 0.9 * m + 0.1 * gt
      v = 0.999 * v + 0.001 * gt * gt
    t = step + 1
    direction = (m / (1 - 0.9 ** t)) / (math.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    # float32 bias correction 1 − 0.999^t loses ~1e-5 relative: compare loosely here,
    np.testing.assert_allclose(pre, -lr * 0.1 * direction, rtol=1e-4)
    np.testing.assert_allclose(new, -lr * 1.0 * direction, rtol=1e-4)
    # and the ratio (same float32 path in both groups) tightly.
    np.testing.assert_allclose(new / pre[0], 10.0, rtol=1e-6)
    params = optax.apply_updates(params, updates)


def test_sgd_momentum_trace():
  """SGD momentum 0.9: second update is −lr·mult·(g2 + 0.9·g1)."""
  params = hand_params()
  opt = optim.make_optimizer(name="sgd", momentum=0.9, schedule=0.5,
                             group_multipliers={"pretrained": 1.0, "new": 10.0})
  state = opt.init(params)
  g1 = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.25), params)
  g2 = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), params)
  _, state = opt.update(g1, state, params)
  upd, _ = opt.update(g2, state, params)
  for key, leaves in split_by_top_key(upd).items():
    mult = 1.0 if key == "backbone" else 10.0
    for x in leaves:
      np.testing.assert_allclose(np.asarray(x), -0.5 * mult * (0.5 + 0.9 * 0.25), rtol=1e-6)


# --------------------------------------------------------------------------- clipping

def test_elementwise_clipping():
  """clip=1: gradient 5 → update −lr·mult·1; −5 → +lr·mult; 0.3 untouched."""
  params = {"backbone": {"w": jnp.zeros((3,))}, "head": {"w": jnp.zeros((3,))}}
  grads = {"backbone": {"w": jnp.array([5.0, 0.3, -5.0])},
           "head": {"w": jnp.array([0.3, 5.0, -0.75])}}
  lr = 0.5
  mults = {"pretrained": 1.0, "new": 10.0}
  opt = optim.make_optimizer(name="sgd", momentum=0.0, schedule=lr, group_multipliers=mults,
                             clip=1.0)
  upd = one_update(opt, params, grads)
  np.testing.assert_allclose(np.asarray(upd["backbone"]["w"]),
                             [-lr * 1.0 * 1.0, -lr * 1.0 * 0.3, lr * 1.0 * 1.0], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(upd["head"]["w"]),
                             [-lr * 10.0 * 0.3, -lr * 10.0 * 1.0, lr * 10.0 * 0.75],
                             rtol=1e-6)
  # Without clipping the 5.0 element passes through unchanged.
  opt = optim.make_optimizer(name="sgd", momentum=0.0, schedule=lr, group_multipliers=mults)
  upd = one_update(opt, params, grads)
  np.testing.assert_allclose(np.asarray(upd["backbone"]["w"]),
                             [-lr * 5.0, -lr * 0.3, lr * 5.0], rtol=1e-6)


# --------------------------------------------------------------------------- schedule

def ref_lr(step, base, steps_per_epoch, epochs_per_round, decay_every, decay_factor,
           decay_each_round):
  """Plain-Python rule: locate round r and epoch e of ``step``; past the plan, last round."""
  start = 0
  r = 0
  for idx, epochs in enumerate(epochs_per_round):
    length = epochs * steps_per_epoch
    if step < start + length or idx == len(epochs_per_round) - 1:
      r = idx
      break
    start += length
  e = (step - start) // steps_per_epoch
  exponent = e // decay_every + (r if decay_each_round else 0)
  return base / decay_factor ** exponent


@pytest.mark.parametrize("decay_each_round", [True, False])
@pytest.mark.parametrize("plan", [
    dict(steps_per_epoch=3, epochs_per_round=(12, 5, 3), decay_every=10),
    dict(steps_per_epoch=1, epochs_per_round=(4,), decay_every=2),
    dict(steps_per_epoch=5, epochs_per_round=(2, 21), decay_every=10),
])
@pytest.mark.parametrize("factor", [math.sqrt(10.0), 2.0])
def test_round_epoch_schedule(plan, factor, decay_each_round):
  """Every step of the plan (and 40 beyond it) matches the plain-Python rule."""
  base = 1e-3
  sched = optim.round_epoch_schedule(base, plan["steps_per_epoch"], plan["epochs_per_round"],
                                     decay_every=plan["decay_every"], decay_factor=factor,
                                     decay_each_round=decay_each_round)
  total = sum(plan["epochs_per_round"]) * plan["steps_per_epoch"]
  jitted = jax.jit(sched)
  for step in range(total + 40):
    want = ref_lr(step, base, plan["steps_per_epoch"], plan["epochs_per_round"],
                  plan["decay_every"], factor, decay_each_round)
    np.testing.assert_allclose(float(sched(step)), want, rtol=1e-6, err_msg=f"step {step}")
    np.testing.assert_allclose(float(jitted(jnp.int32(step))), want, rtol=1e-6,
                               err_msg=f"jit step {step}")


def test_round_epoch_schedule_hand_values():
  """steps/epoch 3, rounds (12, 5, 3), decay every 10, factor 2, base 1."""
  sched = optim.round_epoch_schedule(1.0, 3, (12, 5, 3), decay_every=10, decay_factor=2.0)
  cases = {0: 1.0, 29: 1.0, 30: 0.5, 35: 0.5,  # round 0: epochs 0–9, 10–11
           36: 0.5, 50: 0.5,                   # round 1 starts at step 36
           51: 0.25, 59: 0.25,                 # round 2 starts at step 51
           60: 0.25, 80: 0.25, 81: 0.125}      # past the plan: epoch 10 of round 2 at 81
  for step, want in cases.items():
    assert float(sched(step)) == want, step


def test_schedule_and_optimizer_errors():
  with pytest.raises(ValueError):
    optim.round_epoch_schedule(1e-3, 0, (1, 2))
  with pytest.raises(ValueError):
    optim.round_epoch_schedule(1e-3, -2, (1, 2))
  with pytest.raises(ValueError):
    optim.make_optimizer(name="rmsprop", schedule=1e-3,
                         group_multipliers={"pretrained": 1.0, "new": 1.0})
  with pytest.raises(ValueError):
    optim.make_optimizer(name="sgd", schedule=1e-3, group_multipliers={"new": 1.0})


def test_optimizer_advances_schedule_count():
  """Successive updates use lr(0), lr(1), lr(2), …: the schedule's count advances."""
  base = 1.0
  sched = optim.round_epoch_schedule(base, 1, (2, 2), decay_every=1, decay_factor=2.0)
  params = {"backbone": {"w": jnp.zeros((2,))}, "head": {"w": jnp.zeros((2,))}}
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.25), params)
  opt = optim.make_optimizer(name="sgd", momentum=0.0, schedule=sched,
                             group_multipliers={"pretrained": 1.0, "new": 10.0})
  state = opt.init(params)
  # Steps 0..4: round 0 epochs 0, 1; round 1 epochs 0, 1; then past the plan (epoch 2).
  want_lr = [ref_lr(t, base, 1, (2, 2), 1, 2.0, True) for t in range(5)]
  assert want_lr == [1.0, 0.5, 0.5, 0.25, 0.125]
  for lr in want_lr:
    updates, state = opt.update(grads, state, params)
    np.testing.assert_array_equal(np.asarray(updates["backbone"]["w"]), -lr * 0.25)
    np.testing.assert_array_equal(np.asarray(updates["head"]["w"]), -lr * 10.0 * 0.25)


def test_scale_by_adam_equals_optax_over_several_steps():
  """The stored-moments Adam gives optax's updates and state, step after step."""
  rng = np.random.default_rng(3)
  params = {"a": jnp.asarray(rng.normal(size=(7, 5)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
  ours, ref = optim.scale_by_adam(b1=0.8, b2=0.99, eps=1e-6), optax.scale_by_adam(
      b1=0.8, b2=0.99, eps=1e-6)
  s_ours, s_ref = ours.init(params), ref.init(params)
  update = jax.jit(lambda g, s: ours.update(g, s))
  for _ in range(4):
    grads = jax.tree_util.tree_map(
        lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    u_ours, s_ours = update(grads, s_ours)
    u_ref, s_ref = ref.update(grads, s_ref)
    for x, y in zip(jax.tree_util.tree_leaves((u_ours, s_ours)),
                    jax.tree_util.tree_leaves((u_ref, s_ref))):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
  assert type(s_ours) is type(s_ref)          # checkpoints keep optax's state layout
