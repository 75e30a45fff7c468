"""Tests for dseh_jax.baseline_losses against float64 numpy loops over pairs (SPEC §8)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import baseline_losses as bl

B, N, K, C = 5, 9, 6, 4


@pytest.fixture
def x64():
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", old)


def make_inputs(seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  bank_labels = (rng.random((N, C)) < 0.35).astype(np.float32)
  bank_labels[np.arange(N), rng.integers(0, C, N)] = 1.0   # every point has a label
  bank_u = (scale * rng.normal(size=(N, K))).astype(np.float32)
  idx = rng.choice(N, B, replace=False)
  u = (scale * rng.normal(size=(B, K))).astype(np.float32)
  return dict(u=u, labels=bank_labels[idx], bank_u=bank_u, bank_labels=bank_labels)


# --------------------------------------------------------------------------- references

def ref_sim(la, lb):
  out = np.zeros((len(la), len(lb)))
  for i in range(len(la)):
    for j in range(len(lb)):
      out[i, j] = float(any(la[i, c] > 0 and lb[j, c] > 0 for c in range(la.shape[1])))
  return out


def ref_reduce_pairs(vals, reduction):
  """vals: {(i, j): value}; 'mean' over pairs, 'paper' sum / b."""
  total = sum(vals.values())
  return total / (B * N) if reduction == "mean" else total / B


def ref_reduce_bits(vals, reduction):
  total = sum(vals.values())
  return total / (B * K) if reduction == "mean" else total / B


def ref_pairwise(u, bank_u, labels, bank_labels, scale, weights=None):
  u, bank_u = np.float64(u), np.float64(bank_u)
  sim = ref_sim(labels, bank_labels)
  out = {}
  for i in range(len(u)):
    for j in range(len(bank_u)):
      theta = scale * sum(u[i, k] * bank_u[j, k] for k in range(u.shape[1]))
      val = math.log1p(math.exp(theta)) - sim[i, j] * theta
      out[i, j] = val * (1.0 if weights is None else weights[i, j])
  return out


def ref_dpsh(inp, eta, reduction):
  like = ref_reduce_pairs(ref_pairwise(inp["u"], inp["bank_u"], inp["labels"],
                                       inp["bank_labels"], 0.5), reduction)
  u = np.float64(inp["u"])
  quant = {(i, k): ((1.0 if u[i, k] >= 0 else -1.0) - u[i, k]) ** 2
           for i in range(B) for k in range(K)}
  q = ref_reduce_bits(quant, reduction)
  return like + eta * q, like, q


def ref_dhn(inp, lam, scale, reduction):
  like = ref_reduce_pairs(ref_pairwise(inp["u"], inp["bank_u"], inp["labels"],
                                       inp["bank_labels"], scale), reduction)
  u = np.float64(inp["u"])
  quant = {(i, k): math.log(math.cosh(abs(u[i, k]) - 1.0)) for i in range(B) for k in range(K)}
  q = ref_reduce_bits(quant, reduction)
  return like + lam * q, like, q


def ref_hashnet(inp, beta, alpha, reduction):
  sim = ref_sim(inp["labels"], inp["bank_labels"])
  n1 = sum(sim[i, j] for i in range(B) for j in range(N))
  n0 = B * N - n1
  w = np.where(sim > 0, B * N / n1, B * N / n0)
  h = np.tanh(beta * np.float64(inp["u"]))
  bank_h = np.tanh(beta * np.float64(inp["bank_u"]))
  return ref_reduce_pairs(ref_pairwise(h, bank_h, inp["labels"], inp["bank_labels"], alpha,
                                       weights=w), reduction)


# -------------------------------------------------------------------------------- values

@pytest.mark.parametrize("reduction", ["mean", "paper"])
def test_dpsh_matches_reference(reduction):
  inp = make_inputs(1)
  total, terms = jax.jit(lambda i: bl.dpsh_loss(**i, eta=0.7, reduction=reduction))(inp)
  want, like, q = ref_dpsh(inp, 0.7, reduction)
  np.testing.assert_allclose(terms["likelihood"], like, rtol=1e-5)
  np.testing.assert_allclose(terms["quantization"], q, rtol=1e-5)
  np.testing.assert_allclose(total, want, rtol=1e-5)


@pytest.mark.parametrize("reduction,scale", [("mean", 1.0), ("paper", 0.5)])
def test_dhn_matches_reference(reduction, scale):
  inp = make_inputs(2)
  total, terms = jax.jit(lambda i: bl.dhn_loss(**i, lam=0.3, theta_scale=scale,
                                               reduction=reduction))(inp)
  want, like, q = ref_dhn(inp, 0.3, scale, reduction)
  np.testing.assert_allclose(terms["likelihood"], like, rtol=1e-5)
  np.testing.assert_allclose(terms["quantization"], q, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, want, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "paper"])
def test_hashnet_matches_reference(reduction):
  inp = make_inputs(3)
  beta = jnp.float32(1.7)   # traced through jit
  total, terms = jax.jit(lambda i, b: bl.hashnet_loss(**i, beta=b, reduction=reduction))(
      inp, beta)
  want = ref_hashnet(inp, 1.7, 10.0 / K, reduction)
  np.testing.assert_allclose(total, want, rtol=1e-5)
  np.testing.assert_allclose(terms["likelihood"], want, rtol=1e-5)


def test_hashnet_weights_balance():
  inp = make_inputs(4)
  sim = np.asarray(bl.losses.label_similarity(inp["labels"], inp["bank_labels"]))
  w = np.asarray(bl.hashnet_pair_weights(sim))
  n1, total = sim.sum(), sim.size
  assert 0 < n1 < total
  np.testing.assert_allclose(w[sim > 0], total / n1, rtol=1e-6)
  np.testing.assert_allclose(w[sim == 0], total / (total - n1), rtol=1e-6)
  np.testing.assert_allclose(w[sim > 0].sum(), total, rtol=1e-5)    # each class weighs |S|
  np.testing.assert_allclose(w[sim == 0].sum(), total, rtol=1e-5)
  np.testing.assert_allclose(w.sum(), 2 * total, rtol=1e-5)
  ones = np.asarray(bl.hashnet_pair_weights(np.ones((3, 4))))
  np.testing.assert_allclose(ones, 1.0)                               # empty class guarded


def test_hashnet_beta_schedule():
  steps = jnp.arange(0, 5001)
  beta = np.asarray(jax.jit(lambda s: bl.hashnet_beta(s))(steps))
  assert np.all(np.diff(beta) >= 0)
  assert beta[0] == 1.0 and beta[199] == 1.0
  np.testing.assert_allclose(beta[200], math.sqrt(1 + 0.005 * 200), rtol=1e-6)
  np.testing.assert_allclose(beta[5000], math.sqrt(1 + 0.005 * 5000), rtol=1e-6)
  every = np.asarray(bl.hashnet_beta(steps, gamma=0.01, power=1.0, step_size=1))
  assert np.all(np.diff(every) > 0)
  np.testing.assert_allclose(every[:3], [1.0, 1.01, 1.02], rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "paper"])
def test_cnnh_loss(reduction):
  rng = np.random.default_rng(5)
  out, tgt = rng.normal(size=(B, K)), np.sign(rng.normal(size=(B, K)))
  lab_out, lab = rng.normal(size=(B, C)), (rng.random((B, C)) < 0.5).astype(np.float64)
  total, terms = bl.cnnh_loss(outputs=out, targets=tgt, reduction=reduction)
  codes = {(i, k): (out[i, k] - tgt[i, k]) ** 2 for i in range(B) for k in range(K)}
  np.testing.assert_allclose(total, ref_reduce_bits(codes, reduction), rtol=1e-5)
  assert set(terms) == {"codes"}
  total, terms = bl.cnnh_loss(outputs=out, targets=tgt, label_outputs=lab_out, labels=lab,
                              label_weight=2.0, reduction=reduction)
  lsq = sum((lab_out[i, c] - lab[i, c]) ** 2 for i in range(B) for c in range(C))
  want_l = lsq / (B * C) if reduction == "mean" else lsq / B
  np.testing.assert_allclose(terms["labels"], want_l, rtol=1e-5)
  np.testing.assert_allclose(total, ref_reduce_bits(codes, reduction) + 2 * want_l, rtol=1e-5)
  with pytest.raises(ValueError):
    bl.cnnh_loss(outputs=out, targets=tgt, label_outputs=lab_out)


def test_bad_reduction():
  with pytest.raises(ValueError):
    bl.dpsh_loss(**make_inputs(0), eta=1.0, reduction="code")


# ----------------------------------------------------------------------------- gradients

def _fd_check(fn, u, eps=1e-6, rtol=1e-6):
  grad = np.asarray(jax.grad(fn)(u))
  fn = jax.jit(fn)
  num = np.zeros_like(grad)
  for idx in np.ndindex(*u.shape):
    d = np.zeros_like(u)
    d[idx] = eps
    num[idx] = (float(fn(u + d)) - float(fn(u - d))) / (2 * eps)
  np.testing.assert_allclose(grad, num, rtol=rtol, atol=1e-8)


def test_gradients_match_finite_differences(x64):
  inp = {k: np.float64(v) for k, v in make_inputs(6).items()}
  u = inp.pop("u")
  u = np.where(np.abs(u) < 0.05, 0.3, u)      # keep sign(u) fixed under ±eps
  beta = jnp.float64(1.3)
  fns = {
      "dpsh": lambda x: bl.dpsh_loss(u=x, **inp, eta=0.7, reduction="paper")[0],
      "dhn": lambda x: bl.dhn_loss(u=x, **inp, lam=0.3, reduction="mean")[0],
      "hashnet": lambda x: bl.hashnet_loss(u=x, **inp, beta=beta, reduction="paper")[0],
      "cnnh": lambda x: bl.cnnh_loss(outputs=x, targets=np.sign(u[:, ::-1]))[0],
  }
  for name, fn in fns.items():
    assert jax.jit(fn)(u).dtype == jnp.float64, name
    _fd_check(fn, u)


def test_bank_carries_no_gradient():
  inp = make_inputs(7)
  g = jax.grad(lambda bank: bl.dpsh_loss(**{**inp, "bank_u": bank}, eta=1.0)[0])(inp["bank_u"])
  assert np.all(np.asarray(g) == 0)


# ----------------------------------------------------------------------------- stability

def test_large_inner_products_stay_finite():
  inp = make_inputs(8, scale=300.0)       # |Θ| ~ 1e5, e^Θ overflows
  fns = [
      lambda u: bl.dpsh_loss(u=u, **rest, eta=1.0),
      lambda u: bl.dhn_loss(u=u, **rest, lam=1.0),
      lambda u: bl.hashnet_loss(u=u, **rest, beta=50.0, alpha=100.0),
  ]
  rest = {k: v for k, v in inp.items() if k != "u"}
  for fn in fns:
    total, terms = fn(inp["u"])
    assert np.isfinite(float(total)) and all(np.isfinite(float(v)) for v in terms.values())
    grad = jax.grad(lambda u: fn(u)[0])(inp["u"])
    assert np.all(np.isfinite(np.asarray(grad)))
  assert np.isfinite(float(bl.log_cosh(jnp.float32(1e4))))
  np.testing.assert_allclose(bl.log_cosh(jnp.float32(1e4)), 1e4 - math.log(2), rtol=1e-6)


# ------------------------------------------------------------------------------ CNNH stage 1

def ref_objective(sim, codes):
  q = codes.shape[1]
  s = 2.0 * np.float64(sim) - 1.0
  return sum((s[i, j] - sum(codes[i, k] * codes[j, k] for k in range(q)) / q) ** 2
             for i in range(len(s)) for j in range(len(s)))


def block_similarity(n_per, classes, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per)
  rng.shuffle(y)
  return (y[:, None] == y[None, :]).astype(np.float32), y


@pytest.mark.parametrize("init", ["spectral", "random"])
def test_cnnh_stage1_objective_non_increasing(init):
  rng = np.random.default_rng(9)
  labels = (rng.random((60, 5)) < 0.25).astype(np.float32)
  labels[np.arange(60), rng.integers(0, 5, 60)] = 1.0
  sim = np.asarray(bl.losses.label_similarity(labels, labels))
  key = jax.random.PRNGKey(0)
  objs = []
  for it in range(6):   # same key → each run extends the previous one by a sweep
    codes = np.asarray(bl.cnnh_stage1_codes(sim, 8, key=key, iterations=it,
                                                init=init))
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    objs.append(float(bl.cnnh_stage1_objective(sim, codes)))
  np.testing.assert_allclose(objs[-1], ref_objective(sim, codes), rtol=1e-5)
  assert all(b <= a + 1e-3 for a, b in zip(objs, objs[1:])), objs
  assert objs[-1] < 0.95 * objs[0], objs


# q ≥ log2(#classes) does not always make distinct codes the unique optimum: for (8, 3) and
# (10, 4) codes shared by two classes reach the same objective, so those are not asserted.
@pytest.mark.parametrize("classes,bits", [(2, 1), (4, 2), (8, 4), (10, 6), (16, 8)])
def test_cnnh_stage1_recovers_block_code(classes, bits):
  sim, y = block_similarity(6, classes, seed=classes)
  codes = np.asarray(bl.cnnh_stage1_codes(sim, bits, key=jax.random.PRNGKey(1), iterations=8))
  rows = {tuple(r) for r in codes}
  for c in range(classes):                     # one code per class ...
    assert len({tuple(r) for r in codes[y == c]}) == 1
  assert len(rows) == classes                   # ... and distinct classes, distinct codes
  same = (codes @ codes.T == bits)
  np.testing.assert_array_equal(same, sim > 0)
