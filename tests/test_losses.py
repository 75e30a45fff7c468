"""Tests for dseh_jax.losses against float64 numpy references of SPEC §2–§4."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import losses


# --------------------------------------------------------------------------- references

def ref_similarity(la: np.ndarray, lb: np.ndarray) -> np.ndarray:
  """Double loop over label sets: 1 where the two sets intersect."""
  out = np.zeros((la.shape[0], lb.shape[0]))
  for i in range(la.shape[0]):
    set_i = {c for c in range(la.shape[1]) if la[i, c]}
    for j in range(lb.shape[0]):
      set_j = {c for c in range(lb.shape[1]) if lb[j, c]}
      out[i, j] = 1.0 if set_i & set_j else 0.0
  return out


def ref_pairwise_terms(a, b, sim, s, half):
  """Per-pair ``log(1 + exp(Θ)) − s·S·Θ`` in float64, and ``Θ``."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  theta = a @ b.T * (0.5 if half else 1.0)
  return np.logaddexp(0.0, theta) - s * np.asarray(sim, np.float64) * theta, theta


def ref_pairwise(a, b, sim, s, half, reduction):
  per_pair, _ = ref_pairwise_terms(a, b, sim, s, half)
  if reduction == "paper":
    return per_pair.sum(axis=1).mean()
  return per_pair.mean()


def ref_pairwise_loop(a, b, sim, s, half, reduction):
  """The same quantity with plain Python loops and math (tiny sizes only)."""
  import math
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  nb, n = a.shape[0], b.shape[0]
  total = 0.0
  for i in range(nb):
    for j in range(n):
      t = sum(float(a[i, k]) * float(b[j, k]) for k in range(a.shape[1]))
      if half:
        t *= 0.5
      sp = t + math.log1p(math.exp(-t)) if t > 0 else math.log1p(math.exp(t))
      total += sp - s * float(sim[i, j]) * t
  return total / nb if reduction == "paper" else total / (nb * n)


def ref_quantization(h, reduction):
  gap = np.abs(np.abs(np.asarray(h, np.float64)) - 1.0)
  return gap.sum(axis=1).mean() if reduction == "paper" else 0.01 * gap.mean()


def ref_reconstruction(y, yhat, reduction):
  sq = (np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) ** 2
  return sq.sum(axis=1).mean() if reduction == "paper" else 0.5 * sq.mean()


def ref_sigmoid_ce(z, t, scale, factor, reduction):
  """``−[t log σ(x) + (1−t) log(1−σ(x))]`` with ``x = scale·z``, ``t = factor·target``."""
  x = scale * np.asarray(z, np.float64)
  t = factor * np.asarray(t, np.float64)
  # log σ(x) = −log(1+e^{−x}); log(1−σ(x)) = −log(1+e^{x}).
  ce = t * np.logaddexp(0.0, -x) + (1.0 - t) * np.logaddexp(0.0, x)
  return ce.sum(axis=1).mean() if reduction == "paper" else ce.mean()


def random_labels(rng, n, c, p=0.35):
  return (rng.random((n, c)) < p).astype(np.float32)


# --------------------------------------------------------------------------- label_similarity

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_label_similarity_matches_set_intersection(seed, dtype):
  """S_ij = 1 iff the label sets intersect (rows with no label included)."""
  rng = np.random.default_rng(seed)
  la = random_labels(rng, 9, 5, p=0.3).astype(dtype)
  lb = random_labels(rng, 13, 5, p=0.3).astype(dtype)
  la[0] = 0  # an empty label set is similar to nothing
  got = np.asarray(losses.label_similarity(jnp.asarray(la), jnp.asarray(lb)))
  np.testing.assert_array_equal(got, ref_similarity(la, lb))


# --------------------------------------------------------------------------- pairwise

@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("s", [1.0, 0.999, 5.0])
@pytest.mark.parametrize("seed,shape", [(0, (4, 7, 3)), (1, (8, 20, 16)), (2, (1, 5, 2)),
                                        (3, (32, 50, 12))])
def test_pairwise_likelihood_matches_numpy(seed, shape, s, half, reduction):
  """Random moderate inputs: agrees with the float64 formula."""
  nb, n, d = shape
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(nb, d)).astype(np.float32)
  b = rng.normal(size=(n, d)).astype(np.float32)
  sim = ref_similarity(random_labels(rng, nb, 4), random_labels(rng, n, 4))
  got = float(losses.pairwise_likelihood(jnp.asarray(a), jnp.asarray(b),
                                         jnp.asarray(sim, jnp.float32), s=s, half=half,
                                         reduction=reduction))
  want = ref_pairwise(a, b, sim, s, half, reduction)
  per_pair, _ = ref_pairwise_terms(a, b, sim, s, half)
  scale = np.abs(per_pair).sum() / (nb if reduction == "paper" else nb * n)
  assert abs(got - want) <= 1e-5 * abs(want) + 1e-6 * scale, (got, want)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("half", [False, True])
def test_pairwise_likelihood_matches_python_loop(half, reduction):
  """Tiny case against a scalar Python loop (independent of numpy broadcasting)."""
  rng = np.random.default_rng(7)
  a = rng.normal(size=(3, 4)).astype(np.float32)
  b = rng.normal(size=(5, 4)).astype(np.float32)
  sim = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]], np.float32)
  for s in (1.0, 0.999, 5.0):
    got = float(losses.pairwise_likelihood(jnp.asarray(a), jnp.asarray(b), jnp.asarray(sim),
                                           s=s, half=half, reduction=reduction))
    want = ref_pairwise_loop(a, b, sim, s, half, reduction)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("s", [1.0, 0.999, 5.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_likelihood_large_inner_products(seed, s, half, reduction):
  """|Θ| in the thousands: finite, and equal to the float64 reference to ~1e-5."""
  rng = np.random.default_rng(seed)
  d = 64
  a = (30.0 * rng.choice([-1.0, 1.0], size=(6, d)) *
       rng.uniform(0.5, 1.0, size=(6, d))).astype(np.float32)
  b = (30.0 * rng.choice([-1.0, 1.0], size=(9, d)) *
       rng.uniform(0.5, 1.0, size=(9, d))).astype(np.float32)
  sim = ref_similarity(random_labels(rng, 6, 3, 0.5), random_labels(rng, 9, 3, 0.5))
  _, theta = ref_pairwise_terms(a, b, sim, s, half)
  assert np.abs(theta).max() > 1000.0  # the case really exercises overflow
  got = float(losses.pairwise_likelihood(jnp.asarray(a), jnp.asarray(b),
                                         jnp.asarray(sim, jnp.float32), s=s, half=half,
                                         reduction=reduction))
  assert np.isfinite(got)
  want = ref_pairwise(a, b, sim, s, half, reduction)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_pairwise_likelihood_extreme_theta_per_pair():
  """Single pairs at Θ = ±5000 give exactly the asymptotes, never inf/nan."""
  a = jnp.array([[100.0], [-100.0]], jnp.float32)
  b = jnp.array([[50.0]], jnp.float32)
  for sim_val, s in [(1.0, 1.0), (0.0, 1.0), (1.0, 5.0), (1.0, 0.999)]:
    sim = jnp.full((2, 1), sim_val, jnp.float32)
    got = float(losses.pairwise_likelihood(a, b, sim, s=s, reduction="code"))
    # Θ = +5000: softplus = 5000; Θ = −5000: softplus = 0 (to float64 precision).
    want = 0.5 * ((5000.0 - s * sim_val * 5000.0) + (0.0 + s * sim_val * 5000.0))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("s", [1.0, 5.0])
def test_pairwise_likelihood_gradient(s, half, reduction):
  """grad_a = Σ_j (σ(Θ_ij) − s·S_ij)·c·b_j, divided by B (paper) or B·n (code)."""
  rng = np.random.default_rng(11)
  nb, n, d = 5, 8, 6
  a = rng.normal(size=(nb, d)).astype(np.float32)
  b = rng.normal(size=(n, d)).astype(np.float32)
  sim = ref_similarity(random_labels(rng, nb, 3, 0.5), random_labels(rng, n, 3, 0.5))
  grad = jax.grad(lambda x: losses.pairwise_likelihood(
      x, jnp.asarray(b), jnp.asarray(sim, jnp.float32), s=s, half=half,
      reduction=reduction))(jnp.asarray(a))
  c = 0.5 if half else 1.0
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  theta = c * a64 @ b64.T
  want = np.zeros((nb, d))
  for i in range(nb):
    for j in range(n):
      sigma = 1.0 / (1.0 + np.exp(-theta[i, j]))
      want[i] += (sigma - s * sim[i, j]) * c * b64[j]
  want /= nb if reduction == "paper" else nb * n
  # float32 sums of n terms of size up to s·|b|: an entry near 0 keeps only their rounding.
  scale = s * np.abs(b64).max() * c * n / (nb if reduction == "paper" else nb * n)
  np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5, atol=1e-7 * scale)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("half", [False, True])
def test_pairwise_likelihood_counts_equal_repeated_rows(half, reduction):
  """Distinct rows with multiplicities (and count-0 padding) give the loss and the
  gradient of the expanded rows: float64 numpy on the repeats."""
  rng = np.random.default_rng(5)
  nb, u, d = 6, 5, 4
  a = rng.normal(size=(nb, d)).astype(np.float32)
  rows = rng.normal(size=(u, d)).astype(np.float32)
  row_labels = random_labels(rng, u, 3, 0.5)
  counts = np.array([3, 1, 0, 4, 2], np.float32)         # row 2 is padding
  repeat = np.repeat(np.arange(u), counts.astype(int))
  batch_labels = random_labels(rng, nb, 3, 0.5)
  sim_rows = ref_similarity(batch_labels, row_labels)
  sim_full = ref_similarity(batch_labels, row_labels[repeat])

  def loss(x, b, sim, counts=None):
    return losses.pairwise_likelihood(x, jnp.asarray(b), jnp.asarray(sim, jnp.float32),
                                      s=0.999, half=half, reduction=reduction,
                                      counts=None if counts is None else jnp.asarray(counts))

  got, grad = jax.value_and_grad(loss)(jnp.asarray(a), rows, sim_rows, counts)
  want = ref_pairwise(a, rows[repeat], sim_full, 0.999, half, reduction)
  assert abs(float(got) - want) <= 1e-5 * abs(want), (float(got), want)
  eps = 1e-6
  numeric = np.zeros((nb, d))
  for i in range(nb):
    for k in range(d):
      hi, lo = a.astype(np.float64), a.astype(np.float64)     # two copies
      hi[i, k] += eps
      lo[i, k] -= eps
      numeric[i, k] = (ref_pairwise(hi, rows[repeat], sim_full, 0.999, half, reduction)
                       - ref_pairwise(lo, rows[repeat], sim_full, 0.999, half, reduction)
                       ) / (2 * eps)
  np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-4, atol=1e-6)


def test_pairwise_likelihood_cotangents_of_every_input():
  """The hand-written gradient, for every input (b, S and counts too), equals autodiff
  of the plain formula ``Σ_ij w_j (softplus(Θ) − s·S·Θ) / (B·Σw)``."""
  rng = np.random.default_rng(9)
  nb, n, d = 4, 6, 3
  args = (rng.normal(size=(nb, d)), rng.normal(size=(n, d)),
          ref_similarity(random_labels(rng, nb, 3, 0.5), random_labels(rng, n, 3, 0.5)),
          rng.integers(0, 4, n).astype(np.float64))
  args = tuple(jnp.asarray(x, jnp.float32) for x in args)

  def plain(a, b, sim, w):
    theta = 0.5 * a @ b.T
    return jnp.sum(w * (jax.nn.softplus(theta) - 0.8 * sim * theta)) / (nb * jnp.sum(w))

  ours = lambda a, b, sim, w: losses.pairwise_likelihood(a, b, sim, s=0.8, half=True,
                                                         reduction="code", counts=w)
  got = jax.grad(ours, argnums=(0, 1, 2, 3))(*args)
  want = jax.grad(plain, argnums=(0, 1, 2, 3))(*args)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- other terms

@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("seed", [0, 1])
def test_quantization_loss(seed, reduction):
  """J3 vs numpy: ``Σ_k ||h_ik| − 1|`` mean over i, or 0.01 × mean of elements."""
  rng = np.random.default_rng(seed)
  h = rng.uniform(-2.0, 2.0, size=(7, 12)).astype(np.float32)
  h[0, :3] = [1.0, -1.0, 0.0]
  got = float(losses.quantization_loss(jnp.asarray(h), reduction=reduction))
  np.testing.assert_allclose(got, ref_quantization(h, reduction), rtol=1e-6)


def test_quantization_loss_hand_values():
  """h = [[1, −1, 0, 2]]: gaps 0, 0, 1, 1 → paper 2, code 0.01·0.5."""
  h = jnp.array([[1.0, -1.0, 0.0, 2.0]])
  np.testing.assert_allclose(float(losses.quantization_loss(h, reduction="paper")), 2.0)
  np.testing.assert_allclose(float(losses.quantization_loss(h, reduction="code")), 0.005,
                             rtol=1e-6)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("seed", [0, 1])
def test_reconstruction_loss(seed, reduction):
  """J4 vs numpy: squared error summed over classes (paper) or ½ × element mean (code)."""
  rng = np.random.default_rng(seed)
  y = random_labels(rng, 9, 6)
  yhat = rng.uniform(0.0, 1.0, size=(9, 6)).astype(np.float32)
  got = float(losses.reconstruction_loss(jnp.asarray(y), jnp.asarray(yhat),
                                         reduction=reduction))
  np.testing.assert_allclose(got, ref_reconstruction(y, yhat, reduction), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("scale,factor", [(1.0, 1.0), (10.0, 0.999), (2.5, 0.5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_sigmoid_cross_entropy(seed, scale, factor, reduction):
  """ImgNet J2 vs the float64 cross-entropy of σ(scale·z) and factor·h'."""
  rng = np.random.default_rng(seed)
  z = rng.normal(scale=2.0, size=(6, 10)).astype(np.float32)
  t = (rng.random((6, 10)) < 0.5).astype(np.float32)
  got = float(losses.sigmoid_cross_entropy(jnp.asarray(z), jnp.asarray(t), logit_scale=scale,
                                           target_factor=factor, reduction=reduction))
  np.testing.assert_allclose(got, ref_sigmoid_ce(z, t, scale, factor, reduction), rtol=1e-5)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("scale,factor", [(1.0, 1.0), (10.0, 0.999)])
def test_sigmoid_cross_entropy_large_logits(scale, factor, reduction):
  """Logits ±100 (×10 → ±1000) neither overflow nor lose the linear part."""
  z = np.array([[100.0, -100.0, 100.0, -100.0], [3.0, -100.0, 100.0, 0.0]], np.float32)
  t = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]], np.float32)
  got = float(losses.sigmoid_cross_entropy(jnp.asarray(z), jnp.asarray(t), logit_scale=scale,
                                           target_factor=factor, reduction=reduction))
  assert np.isfinite(got)
  np.testing.assert_allclose(got, ref_sigmoid_ce(z, t, scale, factor, reduction), rtol=1e-5)


# --------------------------------------------------------------------------- full losses

def _labnet_inputs(seed):
  rng = np.random.default_rng(seed)
  nb, n, k, c, f = 5, 11, 8, 4, 6
  return dict(
      semantic=rng.normal(size=(nb, f)).astype(np.float32),
      codes=np.tanh(rng.normal(size=(nb, k))).astype(np.float32),
      label_pred=rng.uniform(size=(nb, c)).astype(np.float32),
      labels=random_labels(rng, nb, c, 0.4),
      all_semantic=rng.normal(size=(n, f)).astype(np.float32),
      all_codes=np.tanh(rng.normal(size=(n, k))).astype(np.float32),
      all_labels=random_labels(rng, n, c, 0.4),
  )


def _ref_labnet_terms(x, s, half, reduction):
  sim = ref_similarity(x["labels"], x["all_labels"])
  return {
      "j1": ref_pairwise(x["semantic"], x["all_semantic"], sim, s, half, reduction),
      "j2": ref_pairwise(x["codes"], x["all_codes"], sim, s, half, reduction),
      "j3": ref_quantization(x["codes"], reduction),
      "j4": ref_reconstruction(x["labels"], x["label_pred"], reduction),
  }


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("weights", [
    {"j1": 1.0, "j2": 1.0, "j3": 0.005, "j4": 1.0},
    {"j1": 0.0, "j2": 1.0, "j3": 1.0, "j4": 0.1},
    {"j1": 0.3, "j2": 1.7, "j3": 2.0, "j4": 0.6},
    {"j3": 0.5},  # terms not named get weight 1
])
@pytest.mark.parametrize("s,half", [(1.0, False), (0.999, True), (5.0, True)])
def test_labnet_loss(s, half, weights, reduction):
  """Total = Σ w·J over independently computed J1…J4; each term matches too."""
  x = _labnet_inputs(3)
  total, terms = losses.labnet_loss(**{k: jnp.asarray(v) for k, v in x.items()},
                                    weights=weights, s=s, half=half, reduction=reduction)
  ref = _ref_labnet_terms(x, s, half, reduction)
  assert set(terms) == set(ref)
  for name in ref:
    np.testing.assert_allclose(float(terms[name]), ref[name], rtol=1e-5, err_msg=name)
  want = sum(weights.get(name, 1.0) * ref[name] for name in ref)
  np.testing.assert_allclose(float(total), want, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["paper", "code"])
@pytest.mark.parametrize("weights", [{"j1": 1.0, "j2": 1.0}, {"j1": 0.0, "j2": 2.5},
                                     {"j2": 0.3}])
@pytest.mark.parametrize("s,half,scale,factor", [(1.0, False, 1.0, 1.0),
                                                 (0.999, True, 10.0, 0.999)])
def test_imgnet_loss(s, half, scale, factor, weights, reduction):
  """Total = w1·J1 + η·J2 over independently computed terms."""
  rng = np.random.default_rng(5)
  nb, n, k, c, f = 6, 10, 8, 3, 7
  semantic = rng.normal(size=(nb, f)).astype(np.float32)
  logits = rng.normal(size=(nb, k)).astype(np.float32)
  labels = random_labels(rng, nb, c, 0.5)
  bits = (rng.random((nb, k)) < 0.5).astype(np.float32)
  all_semantic = rng.normal(size=(n, f)).astype(np.float32)
  all_labels = random_labels(rng, n, c, 0.5)
  total, terms = losses.imgnet_loss(
      jnp.asarray(semantic), jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(bits),
      jnp.asarray(all_semantic), jnp.asarray(all_labels), weights=weights, s=s, half=half,
      logit_scale=scale, target_factor=factor, reduction=reduction)
  sim = ref_similarity(labels, all_labels)
  ref = {"j1": ref_pairwise(semantic, all_semantic, sim, s, half, reduction),
         "j2": ref_sigmoid_ce(logits, bits, scale, factor, reduction)}
  assert set(terms) == set(ref)
  for name in ref:
    np.testing.assert_allclose(float(terms[name]), ref[name], rtol=1e-5, err_msg=name)
  want = sum(weights.get(name, 1.0) * ref[name] for name in ref)
  np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_unknown_weight_names_raise():
  x = {k: jnp.asarray(v) for k, v in _labnet_inputs(0).items()}
  with pytest.raises(ValueError):
    losses.labnet_loss(**x, weights={"j1": 1.0, "j5": 1.0}, s=1.0, half=False,
                       reduction="paper")
  with pytest.raises(ValueError):
    losses.imgnet_loss(x["semantic"], x["codes"], x["labels"], x["codes"] > 0,
                       x["all_semantic"], x["all_labels"], weights={"j3": 1.0}, s=1.0,
                       half=False, logit_scale=1.0, target_factor=1.0, reduction="paper")


def test_bad_reduction_raises():
  x = {k: jnp.asarray(v) for k, v in _labnet_inputs(0).items()}
  sim = losses.label_similarity(x["labels"], x["all_labels"])
  with pytest.raises(ValueError):
    losses.labnet_loss(**x, weights={}, s=1.0, half=False, reduction="mean")
  with pytest.raises(ValueError):
    losses.imgnet_loss(x["semantic"], x["codes"], x["labels"], x["codes"] > 0,
                       x["all_semantic"], x["all_labels"], weights={}, s=1.0, half=False,
                       logit_scale=1.0, target_factor=1.0, reduction="sum")
  with pytest.raises(ValueError):
    losses.pairwise_likelihood(x["semantic"], x["all_semantic"], sim, reduction="Paper")
  with pytest.raises(ValueError):
    losses.quantization_loss(x["codes"], reduction="")
  with pytest.raises(ValueError):
    losses.reconstruction_loss(x["labels"], x["label_pred"], reduction="batch")
  with pytest.raises(ValueError):
    losses.sigmoid_cross_entropy(x["codes"], x["codes"] > 0, reduction="none")
