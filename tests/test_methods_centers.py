"""Hash centres and the three methods on them (CSQ, DPN, OrthoHash): the centres and the
points' targets against brute force, each loss against a float64 numpy reference and
finite differences, and each method end to end on the tiny set (CSQ through a mid-phase
resume: the hand-off is rebuilt from the run's key, not saved)."""
from __future__ import annotations

import itertools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import methods
from dseh_jax import train_steps as ts
from dseh_jax.configs import validation
from dseh_jax.data.registry import load_dataset
from dseh_jax.methods import centers, csq, dpn, orthohash
from dseh_jax.trainer import Trainer
from test_baseline_losses import _fd_check, x64  # noqa: F401  (x64 is a fixture)
from test_trainer import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("csq", "dpn", "orthohash")
B, K, C = 6, 8, 5
KEY = jax.random.PRNGKey(0)


def make_labels(seed, *, single):
  rng = np.random.default_rng(seed)
  if single:
    return np.eye(C)[rng.integers(0, C, B)]
  labels = (rng.random((B, C)) < 0.4).astype(np.float64)
  labels[np.arange(B), rng.integers(0, C, B)] = 1.0
  return labels


def hamming(a, b):
  return int(np.sum(a != b))


# ------------------------------------------------------------------------------ centres

@pytest.mark.parametrize("k", [1, 2, 8, 32])
def test_hadamard_rows_are_orthogonal(k):
  h = centers.hadamard(k)
  np.testing.assert_array_equal(h @ h.T, k * np.eye(k))
  with pytest.raises(ValueError, match="power of 2"):
    centers.hadamard(12)


def test_hadamard_centres_are_half_the_bits_apart():
  c = centers.hash_centers(10, 32, key=KEY)
  assert c.shape == (10, 32) and c.dtype == np.float32 and set(np.unique(c)) == {-1.0, 1.0}
  for i, j in itertools.combinations(range(10), 2):
    assert hamming(c[i], c[j]) == 16
  # More classes than bits: the rows of −H_K follow, each the negation of one of H_K.
  c = centers.hash_centers(12, 8, key=KEY)
  np.testing.assert_array_equal(c[8:], -centers.hadamard(8)[:4])
  for i, j in itertools.combinations(range(12), 2):
    assert hamming(c[i], c[j]) == (8 if j == i + 8 else 4)
  # More than 2K classes: random rows after the 2K Hadamard ones; K not a power of 2: random.
  c = centers.hash_centers(20, 8, key=KEY)
  np.testing.assert_array_equal(c[:16], np.concatenate([centers.hadamard(8),
                                                        -centers.hadamard(8)]))
  np.testing.assert_array_equal(centers.hash_centers(20, 8, key=KEY), c)
  c = centers.hash_centers(6, 12, key=KEY)
  np.testing.assert_array_equal(c, centers.hash_centers(6, 12, key=KEY, kind="random"))


def test_random_centres_are_deterministic_per_key_and_spread():
  a = centers.hash_centers(10, 16, key=KEY, kind="random")
  assert a.shape == (10, 16) and a.dtype == np.float32 and set(np.unique(a)) == {-1.0, 1.0}
  np.testing.assert_array_equal(a, centers.hash_centers(10, 16, key=KEY, kind="random"))
  assert not np.array_equal(a, centers.hash_centers(10, 16, key=jax.random.PRNGKey(1),
                                                    kind="random"))
  # The best of the draws: no single draw from the same key is more spread out.
  draws = np.asarray(jax.random.bernoulli(KEY, 0.5, (centers.RANDOM_TRIES, 10, 16)))
  best = max(centers._min_distance(np.where(d, 1.0, -1.0)) for d in draws)
  assert centers._min_distance(a) == best >= 1
  assert 0.3 < np.mean(a > 0) < 0.7
  with pytest.raises(ValueError, match="kind='nope'"):
    centers.hash_centers(3, 8, key=KEY, kind="nope")


def test_label_centres_against_brute_force():
  rng = np.random.default_rng(0)
  codes = centers.hash_centers(6, 16, key=KEY, kind="random")
  labels = (rng.random((40, 6)) < 0.35).astype(np.float32)
  labels[np.arange(40), rng.integers(0, 6, 40)] = 1.0
  labels[:6] = np.eye(6)                                  # single labels first
  labels[6] = [1, 1, 0, 0, 0, 0]                           # and a pair with ties
  tie_key = jax.random.PRNGKey(5)
  got = centers.label_centers(labels, codes, key=tie_key)
  tie = np.where(np.asarray(jax.random.bernoulli(tie_key, 0.5, (16,))), 1.0, -1.0)
  assert got.shape == (40, 16) and got.dtype == np.float32
  for i in range(40):
    members = [codes[c] for c in range(6) if labels[i, c]]
    for k in range(16):
      s = sum(m[k] for m in members)
      assert got[i, k] == (1.0 if s > 0 else -1.0 if s < 0 else tie[k]), (i, k)
  np.testing.assert_array_equal(got[:6], codes)           # a single label: its centre
  ties = codes[0] != codes[1]
  assert ties.any()
  np.testing.assert_array_equal(got[6][ties], tie[ties])   # ties: the key's vector
  np.testing.assert_array_equal(got[6][~ties], codes[0][~ties])
  np.testing.assert_array_equal(got, centers.label_centers(labels, codes, key=tie_key))
  # Equal label sets get equal targets (one tie vector for all points).
  again = centers.label_centers(np.stack([labels[6]] * 3), codes, key=tie_key)
  assert (again == got[6]).all()
  other = [centers.label_centers(labels[6:7], codes, key=jax.random.PRNGKey(s))[0]
           for s in range(8)]
  assert len({tuple(o[ties]) for o in other}) > 1          # the key decides the ties


def test_a_point_without_labels_is_refused():
  labels = np.eye(3)[[0, 1, 2, 0]]
  labels[2] = 0
  with pytest.raises(ValueError, match=r"^1 point\(s\) have no label \(first: row 2\)"):
    centers.label_centers(labels, centers.hash_centers(3, 8, key=KEY), key=KEY)


# ------------------------------------------------------------------------------- losses

def reduce_bits(per_bit, reduction):
  return per_bit.mean() if reduction == "mean" else per_bit.sum(1).mean()


def targets_of(labels, seed=3):
  codes = centers.hash_centers(C, K, key=jax.random.PRNGKey(seed), kind="random")
  return np.float64(centers.label_centers(labels, codes, key=jax.random.PRNGKey(seed + 1)))


def ref_csq(z, t, lam, reduction):
  z, t = np.float64(z), np.float64(t)
  u = np.tanh(z)
  p, q = (u + 1) / 2, (t + 1) / 2
  bce = -(q * np.log(p) + (1 - q) * np.log(1 - p))
  quant = (np.abs(u) - 1) ** 2
  central, quantization = reduce_bits(bce, reduction), reduce_bits(quant, reduction)
  return central + lam * quantization, central, quantization


def ref_dpn(z, t, margin, reduction):
  z, t = np.float64(z), np.float64(t)
  hinge = np.zeros_like(z)
  for i, k in itertools.product(range(z.shape[0]), range(z.shape[1])):
    hinge[i, k] = max(margin - z[i, k] * t[i, k], 0.0)
  return reduce_bits(hinge, reduction)


def ref_orthohash(z, y, codes, s, m, quant, classification, reduction):
  z, y, codes = np.float64(z), np.float64(y), np.float64(codes)
  b, c = y.shape
  logits = np.zeros((b, c))
  for i, j in itertools.product(range(b), range(c)):
    cos = z[i] @ codes[j] / (np.linalg.norm(z[i]) * np.linalg.norm(codes[j]))
    logits[i, j] = s * (cos - m * y[i, j])
  if classification == "softmax":
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    ce = np.mean([-np.sum(y[i] / y[i].sum() * logp[i]) for i in range(b)])
  else:
    ce = reduce_bits(np.log1p(np.exp(logits)) - y * logits, reduction)
  q = np.mean([1 - np.sum(np.abs(z[i])) / (np.linalg.norm(z[i]) * np.sqrt(z.shape[1]))
               for i in range(b)])
  return ce + quant * q, ce, q


@pytest.mark.parametrize("reduction", ["mean", "paper"])
@pytest.mark.parametrize("single", [False, True])
def test_losses_match_references(reduction, single):
  rng = np.random.default_rng(1)
  labels = make_labels(2, single=single).astype(np.float32)     # float32 into JAX,
  t = targets_of(labels).astype(np.float32)                       # float64 references
  z = (2.0 * rng.normal(size=(B, K))).astype(np.float32)
  total, terms = jax.jit(lambda z, t: csq.csq_loss(logits=z, targets=t, lam=0.3,
                                                   reduction=reduction))(z, t)
  want = ref_csq(z, t, 0.3, reduction)
  np.testing.assert_allclose([total, terms["central"], terms["quantization"]], want,
                             rtol=1e-5)
  total, terms = dpn.dpn_loss(logits=z, targets=t, margin=1.0, reduction=reduction)
  np.testing.assert_allclose([total, terms["polarization"]], [ref_dpn(z, t, 1.0, reduction)] * 2,
                             rtol=1e-5)
  codes = centers.hash_centers(C, K, key=KEY)
  for classification in orthohash.CLASSIFICATIONS:
    total, terms = orthohash.orthohash_loss(
        logits=z, labels=labels, codes=codes, scale=8.0, margin=0.2, quant=0.5,
        classification=classification, reduction=reduction)
    want = ref_orthohash(z, labels, codes, 8.0, 0.2, 0.5, classification, reduction)
    np.testing.assert_allclose([total, terms["classification"], terms["quantization"]],
                               want, rtol=1e-5)


def test_losses_are_finite_and_right_at_the_extremes():
  t = np.array([[1.0, -1.0, 1.0]], np.float32)
  z = np.array([[40.0, -40.0, -40.0]], np.float32)         # tanh saturated in float32
  total, terms = csq.csq_loss(logits=z, targets=t, lam=1e-4)
  np.testing.assert_allclose(terms["central"], 80.0 / 3, rtol=1e-6)   # one bit: 2|z|
  grad = jax.grad(lambda z: csq.csq_loss(logits=z, targets=t, lam=1e-4)[0])(z)
  assert np.all(np.isfinite(grad)) and grad[0, 2] < 0
  assert float(dpn.dpn_loss(logits=z, targets=t, margin=1.0)[0]) == pytest.approx(41 / 3)
  codes = centers.hash_centers(3, 4, key=KEY)
  zero = np.zeros((2, 4), np.float32)
  total, _ = orthohash.orthohash_loss(logits=zero, labels=np.eye(3)[:2], codes=codes,
                                      scale=8.0, margin=0.2, quant=1.0)
  grad = jax.grad(lambda z: orthohash.orthohash_loss(
      logits=z, labels=np.eye(3)[:2], codes=codes, scale=8.0, margin=0.2, quant=1.0)[0])(zero)
  assert np.isfinite(float(total)) and np.all(np.isfinite(grad))
  with pytest.raises(ValueError, match="reduction='sum'"):
    dpn.dpn_loss(logits=z, targets=t, margin=1.0, reduction="sum")
  with pytest.raises(ValueError, match="classification='x'"):
    orthohash.orthohash_loss(logits=z, labels=np.eye(3)[:1], codes=codes[:, :3], scale=8.0,
                             margin=0.2, classification="x")


@pytest.mark.parametrize("single", [False, True])
def test_gradients_match_finite_differences(x64, single):
  rng = np.random.default_rng(4)
  labels = make_labels(5, single=single)
  t = targets_of(labels)
  z = rng.normal(size=(B, K))
  z = np.where(np.abs(z) < 0.05, 0.3, z)                 # keep sign(z) fixed under ±eps
  z = np.where(np.abs(z * t - 0.7) < 0.05, z + 0.2, z)   # and off DPN's hinge
  codes = np.float64(centers.hash_centers(C, K, key=KEY))
  fns = {
      "csq": lambda x: csq.csq_loss(logits=x, targets=t, lam=0.3, reduction="paper")[0],
      "dpn": lambda x: dpn.dpn_loss(logits=x, targets=t, margin=0.7)[0],
      "orthohash_softmax": lambda x: orthohash.orthohash_loss(
          logits=x, labels=labels, codes=codes, scale=8.0, margin=0.2, quant=0.5)[0],
      "orthohash_sigmoid": lambda x: orthohash.orthohash_loss(
          logits=x, labels=labels, codes=codes, scale=8.0, margin=0.2, quant=0.5,
          classification="sigmoid", reduction="paper")[0],
  }
  for name, fn in fns.items():
    assert jax.jit(fn)(z).dtype == jnp.float64, name
    _fd_check(fn, z)


# ------------------------------------------------------------------------------ methods

def center_config(name, epochs=(3, 2)):
  c = methods.configure(tiny_config(), name)
  c.imgnet.epochs_per_round = epochs
  c.checkpoints_to_keep = 20
  return c


def test_configs_validate_and_modules_are_short():
  for name in NAMES:
    c = methods.configure(tiny_config(), name)
    assert c.method == name and validation.problems(c) == [], name
    c[name].centers = "gaussian"
    assert validation.problems(c) == [
        f"{name}.centers='gaussian': expected one of ('hadamard', 'random')"]
    path = os.path.join(ROOT, "dseh_jax", "methods", f"{name}.py")
    assert sum(1 for _ in open(path, encoding="utf-8")) < 150
  c = methods.configure(tiny_config(), "orthohash")
  assert (c.orthohash.scale, c.orthohash.margin, c.orthohash.quant) == (8.0, 0.2, 0.0)
  c.orthohash.classification = "hinge"
  assert "orthohash.classification='hinge'" in validation.problems(c)[0]


@pytest.mark.parametrize("name", NAMES)
def test_method_trains_against_its_centres(tmp_path, name):
  config = center_config(name, epochs=(2, 1))
  data = load_dataset(config.data)
  trainer = Trainer(config, data, 8, str(tmp_path), progress=False)
  assert [(p.network, p.epochs, p.evolving) for p in trainer.plan] == [("imgnet", 3, False)]
  method = methods.get_method(name)
  handoff = method.start_phase(trainer.run_context, trainer.plan[0], trainer.states)
  codes = method.class_codes(trainer.run_context)
  if name == "orthohash":
    assert isinstance(handoff, centers.ClassCodes)
    np.testing.assert_array_equal(handoff.codes, codes)
  else:
    assert isinstance(handoff, ts.CodeTargets) and handoff.targets.shape == (64, 8)
    single = data.train.labels.sum(1) == 1
    rows = data.train.labels[single].argmax(1)
    np.testing.assert_array_equal(handoff.targets[single], codes[rows])
  result = trainer.run()
  assert result.query_codes.shape == (40, 8)
  for split in (result.train_codes, result.query_codes, result.database_codes):
    assert set(np.unique(split)) <= {-1, 1}
  epochs = [h for h in result.history if h["kind"] == "epoch"]
  assert len(epochs) == 3 and all(np.isfinite(h["loss"]) for h in epochs)
  assert epochs[-1]["loss"] < epochs[0]["loss"]
  rounds = [h for h in result.history if h["kind"] == "imgnet_round"]
  assert len(rounds) == 1 and 0.0 <= result.metrics["map"] <= 1.0


@pytest.mark.slow
def test_resume_mid_phase_rebuilds_the_centres_to_the_same_codes(tmp_path):
  """A CSQ run restarted from an epoch-2 checkpoint (no hand-off saved: the targets are
  rebuilt from the labels and the run's key) ends with the uninterrupted run's codes."""
  config = center_config("csq")
  data = load_dataset(config.data)
  full = Trainer(config, data, 8, str(tmp_path / "full"), progress=False).run()
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  for step in os.listdir(tmp_path / "cut" / "checkpoints"):
    if step.isdigit() and int(step) > 2:
      shutil.rmtree(tmp_path / "cut" / "checkpoints" / step)
  resumed = Trainer(config, data, 8, str(tmp_path / "cut"), progress=False)
  done, _, handoff = resumed.restore()
  assert done == 2 and handoff is None                    # rebuilt at the phase's start
  again = resumed.run()
  np.testing.assert_array_equal(again.train_codes, full.train_codes)
  np.testing.assert_array_equal(again.database_codes, full.database_codes)
