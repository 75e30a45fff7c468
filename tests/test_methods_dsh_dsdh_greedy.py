"""DSH, DSDH and GreedyHash: their losses against float64 numpy references and finite
differences, DSDH's closed-form W and B steps against brute force, and each method end to
end on the tiny set (DSDH's evolving bank through a mid-phase resume)."""
from __future__ import annotations

import importlib.util
import itertools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import methods, optim
from dseh_jax.configs import validation
from dseh_jax.data.registry import load_dataset
from dseh_jax.methods import dsdh, dsh, greedyhash
from dseh_jax.trainer import Trainer
from test_baseline_losses import _fd_check, x64  # noqa: F401  (x64 is a fixture)
from test_trainer import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("dsh", "dsdh", "greedyhash")
B, N, K, C = 5, 9, 6, 4


def make_inputs(seed=0, *, single=False, scale=1.0):
  """A batch ``u [B, K]`` (rows of the bank's labels) and a bank ``[N, K]``, float64."""
  rng = np.random.default_rng(seed)
  if single:
    bank_labels = np.eye(C)[rng.integers(0, C, N)]
  else:
    bank_labels = (rng.random((N, C)) < 0.35).astype(np.float64)
    bank_labels[np.arange(N), rng.integers(0, C, N)] = 1.0
  idx = rng.choice(N, B, replace=False)
  return dict(u=scale * rng.normal(size=(B, K)), labels=bank_labels[idx],
              bank_u=scale * rng.normal(size=(N, K)), bank_labels=bank_labels)


def ref_sim(la, lb):
  return np.array([[float(np.any((a > 0) & (b > 0))) for b in lb] for a in la])


def reduce_rows(per_item, reduction):
  """``[B, m]`` → mean over all, or sum over the row then mean over the batch."""
  return per_item.mean() if reduction == "mean" else per_item.sum(1).mean()


# --------------------------------------------------------------------------------- DSH

def ref_dsh(inp, alpha, margin, reduction, hinge="squared"):
  u, bank = inp["u"], inp["bank_u"]
  sim = ref_sim(inp["labels"], inp["bank_labels"])
  pair, reg = np.zeros((B, N)), np.zeros((B, N))
  for i, j in itertools.product(range(B), range(N)):
    d = sum((u[i, k] - bank[j, k]) ** 2 for k in range(K))
    push = (max(margin - d, 0.0) if hinge == "squared"
            else max(np.sqrt(margin) - np.sqrt(d), 0.0) ** 2)
    pair[i, j] = 0.5 * d if sim[i, j] else 0.5 * push
    reg[i, j] = sum(abs(abs(u[i, k]) - 1.0) for k in range(K))
  con, r = reduce_rows(pair, reduction), reduce_rows(reg, reduction)
  return con + alpha * r, con, r


@pytest.mark.parametrize("reduction", ["mean", "paper"])
@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("hinge", dsh.HINGES)
def test_dsh_matches_reference(reduction, single, hinge):
  inp = make_inputs(1, single=single)
  for margin in (None, 5.0):                 # None: 2K = 12, most pairs inside the hinge
    total, terms = jax.jit(lambda i, m=margin: dsh.dsh_loss(
        **i, alpha=0.3, margin=m, reduction=reduction, hinge=hinge))(inp)
    want, con, reg = ref_dsh(inp, 0.3, 2.0 * K if margin is None else margin, reduction,
                             hinge)
    np.testing.assert_allclose(terms["contrastive"], con, rtol=1e-5)
    np.testing.assert_allclose(terms["regularizer"], reg, rtol=1e-5)
    np.testing.assert_allclose(total, want, rtol=1e-5)


def test_dsh_gradient_matches_finite_differences(x64):
  inp = make_inputs(2)
  u = inp.pop("u")
  u = np.where(np.abs(np.abs(u) - 1.0) < 0.05, 1.3 * np.sign(u), u)   # off the |u| kinks
  for reduction, margin, hinge in (("mean", None, "squared"), ("paper", 5.0, "squared"),
                                  ("mean", None, "distance"), ("paper", 5.0, "distance")):
    fn = lambda x, r=reduction, m=margin, h=hinge: dsh.dsh_loss(
        u=x, **inp, alpha=0.2, margin=m, reduction=r, hinge=h)[0]
    assert jax.jit(fn)(u).dtype == jnp.float64
    _fd_check(fn, u)
  whole = make_inputs(2)
  g = jax.grad(lambda b: dsh.dsh_loss(**{**whole, "bank_u": b}, alpha=0.1)[0])(whole["bank_u"])
  assert np.all(np.asarray(g) == 0)                                   # the bank is constant


# -------------------------------------------------------------------------------- DSDH

def ref_dsdh(inp, binary, eta, reduction):
  u, bank = inp["u"], inp["bank_u"]
  sim = ref_sim(inp["labels"], inp["bank_labels"])
  nll = np.zeros((B, N))
  for i, j in itertools.product(range(B), range(N)):
    theta = 0.5 * sum(u[i, k] * bank[j, k] for k in range(K))
    nll[i, j] = np.logaddexp(0.0, theta) - sim[i, j] * theta
  like, quant = reduce_rows(nll, reduction), reduce_rows((binary - u) ** 2, reduction)
  return like + eta * quant, like, quant


def _binary(seed, shape):
  return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("reduction", ["mean", "paper"])
@pytest.mark.parametrize("single", [False, True])
def test_dsdh_loss_matches_reference(reduction, single):
  inp, binary = make_inputs(3, single=single), _binary(3, (B, K))
  total, terms = jax.jit(lambda i, b: dsdh.dsdh_loss(**i, binary=b, eta=0.7,
                                                     reduction=reduction))(inp, binary)
  want, like, quant = ref_dsdh(inp, binary, 0.7, reduction)
  np.testing.assert_allclose(terms["likelihood"], like, rtol=1e-5)
  np.testing.assert_allclose(terms["quantization"], quant, rtol=1e-5)
  np.testing.assert_allclose(total, want, rtol=1e-5)


def test_dsdh_gradient_matches_finite_differences(x64):
  inp, binary = make_inputs(4), _binary(4, (B, K))
  u = inp.pop("u")
  for reduction in ("mean", "paper"):
    _fd_check(lambda x, r=reduction: dsdh.dsdh_loss(u=x, **inp, binary=binary, eta=3.0,
                                                    reduction=r)[0], u)


def _dcc_objective(binary, codes, labels, w, mu, eta):
  return mu * np.sum((labels - binary @ w) ** 2) + eta * np.sum((binary - codes) ** 2)


def test_dsdh_classifier_is_the_ridge_minimiser(x64):
  rng = np.random.default_rng(5)
  binary, labels = _binary(5, (12, 4)), (rng.random((12, 3)) < 0.4).astype(np.float64)
  mu, nu = 2.0, 0.3
  w = np.asarray(dsdh.dsdh_classifier(jnp.asarray(binary), jnp.asarray(labels), mu=mu, nu=nu))
  # the ridge as least squares on [√μ B; √ν I] W = [√μ Y; 0]
  a = np.vstack([np.sqrt(mu) * binary, np.sqrt(nu) * np.eye(4)])
  y = np.vstack([np.sqrt(mu) * labels, np.zeros((4, 3))])
  np.testing.assert_allclose(w, np.linalg.lstsq(a, y, rcond=None)[0], rtol=1e-9, atol=1e-12)


def test_dsdh_dcc_bits_are_exhaustive_minimisers_and_objective_never_rises(x64):
  rng = np.random.default_rng(6)
  n, k, c, mu, eta = 5, 3, 3, 1.0, 0.4
  codes, labels = rng.normal(size=(n, k)), (rng.random((n, c)) < 0.5).astype(np.float64)
  binary, w = _binary(6, (n, k)), rng.normal(size=(k, c))
  # one bit of the sweep by brute force over its 2^n columns, the other bits fixed
  swept = np.asarray(dsdh.dsdh_codes(binary, codes, labels, w, mu=mu, eta=eta))
  expect = binary.copy()
  for bit in range(k):
    best = min((np.array(col) for col in itertools.product((-1.0, 1.0), repeat=n)),
               key=lambda col: _dcc_objective(np.column_stack(
                   [col if j == bit else expect[:, j] for j in range(k)]), codes, labels, w,
                   mu, eta))
    expect[:, bit] = best
  np.testing.assert_array_equal(swept, expect)
  # alternating W and B steps never raise the whole objective (W's ridge term included)
  bank = dsdh.DSDHBank(jnp.asarray(codes), jnp.asarray(labels), jnp.asarray(binary),
                       jnp.zeros((k, c)))
  values = []
  for _ in range(4):
    w = np.asarray(dsdh.dsdh_classifier(bank.binary, bank.labels, mu=mu, nu=0.1))
    values.append(_dcc_objective(np.asarray(bank.binary), codes, labels, w, mu, eta)
                  + 0.1 * np.sum(w ** 2))
    bank = dsdh.dsdh_update(bank, mu=mu, nu=0.1, eta=eta, iterations=1)
    assert set(np.unique(bank.binary)) <= {-1.0, 1.0}
  assert all(b <= a + 1e-12 for a, b in zip(values, values[1:])), values


# --------------------------------------------------------------------------- GreedyHash

def ref_greedy(h, labels, kernel, bias, alpha, classification, reduction):
  b = np.where(h >= 0, 1.0, -1.0)
  logits = b @ kernel + bias
  if classification == "softmax":
    t = labels / np.maximum(labels.sum(1, keepdims=True), 1.0)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    ce = np.mean(-np.sum(t * logp, axis=1))
  else:
    ce = reduce_rows(np.log1p(np.exp(logits)) - labels * logits, reduction)
  quant = reduce_rows(np.abs(np.abs(h) - 1.0) ** 3, reduction)
  return ce + alpha * quant, ce, quant, logits


def _greedy_inputs(seed, single):
  rng = np.random.default_rng(seed)
  inp = make_inputs(seed, single=single)
  return dict(h=inp["u"], labels=inp["labels"], kernel=rng.normal(size=(K, C)),
              bias=rng.normal(size=C))


@pytest.mark.parametrize("reduction", ["mean", "paper"])
@pytest.mark.parametrize("classification", greedyhash.CLASSIFICATIONS)
@pytest.mark.parametrize("single", [False, True])
def test_greedyhash_matches_reference(reduction, classification, single):
  inp = _greedy_inputs(7, single)
  total, terms = jax.jit(lambda i: greedyhash.greedyhash_loss(
      **i, alpha=0.3, classification=classification, reduction=reduction))(inp)
  want, ce, quant, _ = ref_greedy(**inp, alpha=0.3, classification=classification,
                                  reduction=reduction)
  np.testing.assert_allclose(terms["classification"], ce, rtol=1e-5)
  np.testing.assert_allclose(terms["quantization"], quant, rtol=1e-5)
  np.testing.assert_allclose(total, want, rtol=1e-5)


@pytest.mark.parametrize("classification", greedyhash.CLASSIFICATIONS)
def test_greedyhash_gradient_is_straight_through(x64, classification):
  """∂L/∂h = ∂CE/∂b at b = sign(h) (finite differences of CE in b) + α ∂penalty/∂h (finite
  differences in h); the classifier's gradients are finite differences of the loss."""
  inp = _greedy_inputs(8, single=False)
  h = inp.pop("h")
  h = np.where(np.abs(h) < 0.05, 0.4, h)
  h = np.where(np.abs(np.abs(h) - 1.0) < 0.05, 1.3 * np.sign(h), h)
  for reduction in ("mean", "paper"):
    kw = dict(alpha=0.3, classification=classification, reduction=reduction)
    grad = np.asarray(jax.grad(lambda x: greedyhash.greedyhash_loss(h=x, **inp, **kw)[0])(h))
    pen = jax.jit(lambda x: greedyhash.greedyhash_loss(h=x, **inp, **kw)[1]["quantization"])
    b, eps = np.where(h >= 0, 1.0, -1.0), 1e-6
    num = np.zeros_like(h)
    for idx in np.ndindex(*h.shape):
      d = np.zeros_like(h)
      d[idx] = eps
      num[idx] = ((_ce_of_codes(b + d, inp, classification, reduction)
                   - _ce_of_codes(b - d, inp, classification, reduction)) / (2 * eps)
                  + 0.3 * (float(pen(h + d)) - float(pen(h - d))) / (2 * eps))
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    for name in ("kernel", "bias"):
      rest = {k: v for k, v in inp.items() if k != name}
      _fd_check(lambda x, n=name: greedyhash.greedyhash_loss(h=h, **rest, **{n: x}, **kw)[0],
                inp[name])


def _ce_of_codes(codes, inp, classification, reduction):
  """The classification term of real-valued codes (no sign), float64 numpy."""
  logits = codes @ inp["kernel"] + inp["bias"]
  labels = inp["labels"]
  if classification == "softmax":
    t = labels / np.maximum(labels.sum(1, keepdims=True), 1.0)
    return np.mean(-np.sum(t * (logits - np.log(np.exp(logits).sum(1, keepdims=True))), 1))
  return reduce_rows(np.log1p(np.exp(logits)) - labels * logits, reduction)
# --------------------------------------------------------------------------- end to end

def method_config(name, epochs=(3, 2)):
  c = methods.configure(tiny_config(), name)
  c.imgnet.epochs_per_round = epochs
  c.checkpoints_to_keep = 20
  return c


@pytest.fixture
def written_methods(monkeypatch):
  """Validation over the registry's names that have modules already (others are being
  written elsewhere)."""
  monkeypatch.setattr(validation, "METHODS", tuple(
      n for n in validation.METHODS
      if importlib.util.find_spec(f"dseh_jax.methods.{n}") is not None))


def test_configs_validate_and_modules_are_short(written_methods):
  for name in NAMES:
    assert methods.get_method(name).name == name
    c = methods.configure(tiny_config(), name)
    assert validation.problems(c) == [], name
    c[name].reduction = "sum"
    assert validation.problems(c) == [f"{name}.reduction='sum': expected one of "
                                      "('mean', 'paper')"]
    path = os.path.join(ROOT, "dseh_jax", "methods", f"{name}.py")
    assert sum(1 for _ in open(path, encoding="utf-8")) < 150
  c = methods.configure(tiny_config(), "greedyhash")
  c.greedyhash.classification = "hinge"
  assert validation.problems(c) == [
      "greedyhash.classification='hinge': expected one of ('softmax', 'sigmoid')"]
  c = methods.configure(tiny_config(), "dsh")
  assert (c.dsh.margin, c.dsh.alpha) == (0.0, 0.01)
  c.dsh.hinge = "cubed"
  assert validation.problems(c) == [
      "dsh.hinge='cubed': expected one of ('squared', 'distance')"]


@pytest.mark.parametrize("name", NAMES)
def test_method_trains_one_phase_to_codes(tmp_path, name):
  config = method_config(name)
  data = load_dataset(config.data)
  trainer = Trainer(config, data, 8, str(tmp_path), progress=False)
  assert [(p.network, p.epochs, p.evolving) for p in trainer.plan] == [
      ("imgnet", 5, name != "greedyhash")]
  before = jax.tree_util.tree_map(np.asarray, trainer.states["imgnet"].params)
  result = trainer.run()
  assert result.query_codes.shape == (40, 8)
  assert set(np.unique(result.train_codes)) <= {-1, 1}
  epochs = [h for h in result.history if h["kind"] == "epoch"]
  assert len(epochs) == 5 and all(np.isfinite(h["loss"]) for h in epochs)
  assert 1 <= result.metrics["nh"] <= 64 and 0.0 <= result.metrics["map"] <= 1.0
  if name == "greedyhash":                   # the classifier is a new layer that trains
    assert optim.param_group_labels(before)["classifier"] == {"kernel": optim.NEW,
                                                              "bias": optim.NEW}
    assert before["classifier"]["kernel"].shape == (8, data.num_classes)
    assert all(np.isfinite(h["classification"]) for h in epochs)


def test_greedyhash_states_keep_imgnet_weights_of_the_other_methods():
  config, dsh_config = method_config("greedyhash"), method_config("dsh")
  data = load_dataset(config.data)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  with_head = methods.get_method("greedyhash").create_states(config, data, 8, keys)["imgnet"]
  plain = methods.get_method("dsh").create_states(dsh_config, data, 8, keys)["imgnet"]
  assert set(with_head.params) == set(plain.params) | {"classifier"}
  for a, b in zip(jax.tree_util.tree_leaves({k: with_head.params[k] for k in plain.params}),
                  jax.tree_util.tree_leaves(plain.params)):
    np.testing.assert_array_equal(a, b)
  x = np.asarray(data.train.inputs[:4], np.float32)
  np.testing.assert_array_equal(with_head.apply_fn({"params": with_head.params}, x).hash_logits,
                                plain.apply_fn({"params": plain.params}, x).hash_logits)


def test_dsdh_updates_codes_at_each_epoch_start_only():
  """The step recomputes B and W from the bank when ``state.step`` starts an epoch, then
  takes DSDH's loss against the updated bank's rows; otherwise B and W are kept."""
  config = method_config("dsdh")
  data = load_dataset(config.data)
  method = methods.get_method("dsdh")
  state = method.create_states(config, data, 8, jax.random.split(jax.random.PRNGKey(1), 3))[
      "imgnet"]
  every = method.step_kwargs(config, data, "imgnet")["update_every"]
  assert every == len(data.train) // config.imgnet.batch_size
  rng = np.random.default_rng(0)
  n = len(data.train)
  u0 = rng.standard_normal((n, 8)).astype(np.float32)
  bank = dsdh.DSDHBank(u0, data.train.labels.astype(np.float32),
                       _binary(1, (n, 8)).astype(np.float32),     # not sign(U): B moves
                       np.zeros((8, data.num_classes), np.float32))
  index = rng.choice(n, 16, replace=False)
  batch = {"inputs": np.asarray(data.train.inputs[index], np.float32),
           "labels": data.train.labels[index].astype(np.float32),
           "index": index.astype(np.int32)}
  key = np.asarray(jax.random.PRNGKey(2))
  step = jax.jit(lambda st, b: method.train_step(config, data, "imgnet")(
      st, b, batch, key, axis_name=None))
  s = config.dsdh
  updated = dsdh.dsdh_update(bank, mu=s.mu, nu=s.nu, eta=s.eta, iterations=s.dcc_iterations)
  _, new, metrics = step(state, bank)                          # step 0 starts an epoch
  np.testing.assert_array_equal(new.binary, updated.binary)
  np.testing.assert_allclose(new.classifier, updated.classifier, rtol=1e-5, atol=1e-6)
  assert not np.array_equal(updated.binary, bank.binary)
  u = np.asarray(new.codes, np.float64)[index]
  inp = dict(u=u, labels=batch["labels"], bank_u=np.asarray(new.codes, np.float64),
             bank_labels=data.train.labels.astype(np.float64))
  want = dsdh.dsdh_loss(**inp, binary=np.asarray(updated.binary)[index], eta=s.eta,
                        reduction=s.reduction)[0]
  np.testing.assert_allclose(float(metrics["loss"]), float(want), rtol=1e-4)
  _, kept, _ = step(state.replace(step=state.step + 1), bank)  # mid-epoch: B, W kept
  np.testing.assert_array_equal(kept.binary, bank.binary)
  np.testing.assert_array_equal(kept.classifier, bank.classifier)


@pytest.mark.slow
def test_dsdh_resumes_mid_phase_to_the_same_codes(tmp_path):
  """A DSDH run restarted from an epoch-2 checkpoint (U, B and W saved there) ends with the
  codes of the uninterrupted run."""
  config = method_config("dsdh")
  data = load_dataset(config.data)
  full = Trainer(config, data, 8, str(tmp_path / "full"), progress=False).run()
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  for step in os.listdir(tmp_path / "cut" / "checkpoints"):
    if step.isdigit() and int(step) > 2:
      shutil.rmtree(tmp_path / "cut" / "checkpoints" / step)
  resumed = Trainer(config, data, 8, str(tmp_path / "cut"), progress=False)
  done, _, bank = resumed.restore()
  assert done == 2 and isinstance(bank, dsdh.DSDHBank)
  assert bank.binary.shape == (64, 8) and set(np.unique(bank.binary)) <= {-1.0, 1.0}
  assert np.any(np.asarray(bank.classifier) != 0)          # W was saved, not the template's
  again = resumed.run()
  np.testing.assert_array_equal(again.database_codes, full.database_codes)
  np.testing.assert_array_equal(again.train_codes, full.train_codes)
