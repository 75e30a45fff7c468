"""Methods on the generic trainer: the registry, the deep baselines end to end, their steps
against the losses computed independently, sharding, and exact resume of an evolving bank."""
import ast
import functools
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import methods, networks
from dseh_jax import train_steps as ts
from dseh_jax.configs import validation
from dseh_jax.data.registry import load_dataset
from dseh_jax.trainer import Trainer
from test_trainer import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINES = ("dpsh", "dhn", "hashnet", "cnnh")


def baseline_config(name, epochs=(3, 2)):
  c = methods.configure(tiny_config(), name)
  c.imgnet.epochs_per_round = epochs
  c.checkpoints_to_keep = 20
  return c


def test_registry_names_and_errors():
  assert methods.NAMES[0] == "dseh" and set(BASELINES) <= set(methods.NAMES)
  for name in methods.NAMES:
    assert methods.get_method(name).name == name and name in methods.LABELS
  with pytest.raises(ValueError, match=r"method='nope'; expected one of"):
    methods.get_method("nope")
  c = methods.configure(tiny_config(), "dpsh")
  assert c.method == "dpsh" and c.dpsh.eta == 10.0
  c.dpsh.reduction = "sum"
  assert validation.problems(c) == [
      "dpsh.reduction='sum': expected one of ('mean', 'paper')"]
  del c["dpsh"]
  assert "dpsh is missing" in validation.problems(c)[0]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_one_phase_and_scores_its_codes(tmp_path, name):
  config = baseline_config(name)
  data = load_dataset(config.data)
  trainer = Trainer(config, data, 8, str(tmp_path), progress=False)
  assert [(p.network, p.epochs, p.evolving) for p in trainer.plan] == [
      ("imgnet", 5, name != "cnnh")]
  result = trainer.run()
  assert result.query_codes.shape == (40, 8) and set(np.unique(result.train_codes)) <= {-1, 1}
  epochs = [h for h in result.history if h["kind"] == "epoch"]
  assert len(epochs) == 5 and all(np.isfinite(h["loss"]) for h in epochs)
  rounds = [h for h in result.history if h["kind"] == "imgnet_round"]
  assert len(rounds) == 1 and rounds[0]["nh"] == result.metrics["nh"]
  # The scored MAP is that of the codes returned, recomputed by brute force.
  q, db = result.query_codes.astype(int), result.database_codes.astype(int)
  rel = (data.query.labels @ data.database.labels.T) > 0
  dist = (8 - q @ db.T) // 2
  aps = []
  for i in range(len(q)):
    order = np.argsort(dist[i], kind="stable")
    hits = rel[i, order]
    ranks = np.flatnonzero(hits) + 1
    aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks) if len(ranks) else 0.0)
  np.testing.assert_allclose(result.metrics["map"], np.mean(aps), rtol=1e-9)


@pytest.mark.slow
def test_baseline_resumes_mid_phase_to_the_same_codes(tmp_path):
  """A DPSH run restarted from an epoch-2 checkpoint (its bank saved there) ends with the
  codes of the uninterrupted run."""
  config = baseline_config("dpsh")
  data = load_dataset(config.data)
  full = Trainer(config, data, 8, str(tmp_path / "full"), progress=False).run()
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  for step in os.listdir(tmp_path / "cut" / "checkpoints"):
    if step.isdigit() and int(step) > 2:
      shutil.rmtree(tmp_path / "cut" / "checkpoints" / step)
  resumed = Trainer(config, data, 8, str(tmp_path / "cut"), progress=False)
  done, _, bank = resumed.restore()
  assert done == 2 and isinstance(bank, ts.CodeBank) and bank.codes.shape == (64, 8)
  again = resumed.run()
  np.testing.assert_array_equal(again.database_codes, full.database_codes)
  np.testing.assert_array_equal(again.train_codes, full.train_codes)


def _image_state(config, data):
  return networks.create_imgnet_state(config, data.input_shape, 8, len(data.train),
                                      jax.random.PRNGKey(3))


def _batch(data, index):
  return {"inputs": np.asarray(data.train.inputs[index], np.float32),
          "labels": data.train.labels[index].astype(np.float32),
          "index": np.asarray(index, np.int32)}


def test_dpsh_step_loss_is_the_loss_of_its_outputs_and_bank():
  """The objective writes the batch's centred outputs into the bank, then takes DPSH's
  loss against the whole bank, recomputed here in float64 numpy."""
  config = baseline_config("dpsh")
  data = load_dataset(config.data)
  state = _image_state(config, data)
  method = methods.get_method("dpsh")
  rng = np.random.default_rng(0)
  n = len(data.train)
  bank = ts.CodeBank(jnp.asarray(rng.standard_normal((n, 8)), jnp.float32),
                     jnp.asarray(data.train.labels, jnp.float32))
  index = rng.choice(n, 16, replace=False)
  batch = _batch(data, index)
  keys = ts.example_keys(jax.random.PRNGKey(1), batch["index"])
  loss, (terms, new_bank, _) = method.objective(config, "imgnet")(
      state.params, state=state, bank=bank, batch=batch, keys=keys, axis_name=None,
      flip=False, max_shift=0)
  z = np.asarray(ts.train_forward(state.params, state, batch, keys, flip=False,
                                  max_shift=0).hash_logits, np.float64)
  u = z - z.mean(axis=0)                        # outputs="centered": minus the batch mean
  np.testing.assert_allclose(np.asarray(new_bank.codes)[index], u, rtol=1e-5, atol=1e-5)
  others = np.setdiff1d(np.arange(n), index)
  np.testing.assert_array_equal(np.asarray(new_bank.codes)[others],
                                np.asarray(bank.codes)[others])
  bank_u = np.asarray(new_bank.codes, np.float64)
  sim = (batch["labels"] @ data.train.labels.T > 0).astype(np.float64)
  theta = 0.5 * u @ bank_u.T
  nll = np.sum(np.logaddexp(0.0, theta) - sim * theta) / len(index)
  quant = np.sum((np.where(u >= 0, 1.0, -1.0) - u) ** 2) / len(index)
  np.testing.assert_allclose(float(terms["likelihood"]), nll, rtol=1e-4)
  np.testing.assert_allclose(float(loss), nll + 10.0 * quant, rtol=1e-4)


def test_dpsh_step_on_two_devices_equals_one_device():
  config = baseline_config("dpsh")
  data = load_dataset(config.data)
  state = _image_state(config, data)
  step = methods.get_method("dpsh").train_step(config, data, "imgnet")
  rng = np.random.default_rng(1)
  bank = ts.CodeBank(rng.standard_normal((len(data.train), 8)).astype(np.float32),
                     data.train.labels.astype(np.float32))
  batch = _batch(data, rng.choice(len(data.train), 16, replace=False))
  key = np.asarray(jax.random.PRNGKey(4))
  s1, b1, m1 = jax.jit(functools.partial(step, axis_name=None))(state, bank, batch, key)
  s2, b2, m2 = ts.pmap_step(step)(ts.replicate(state), ts.replicate(bank),
                                  ts.shard_batch(batch, 2), np.broadcast_to(key, (2, 2)))
  np.testing.assert_allclose(np.asarray(b2.codes[0]), np.asarray(b1.codes), atol=1e-5)
  np.testing.assert_allclose(float(m2["loss"][0]), float(m1["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(s1.params),
                  jax.tree_util.tree_leaves(ts.unreplicate(s2).params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_hashnet_raises_beta_with_the_step():
  method = methods.get_method("hashnet")
  settings = methods.configure(tiny_config(), "hashnet").hashnet.to_dict()
  betas = [float(method.loss_kwargs(settings, ts.TrainState(
      step=jnp.asarray(t), apply_fn=None, params={}, tx=None, opt_state=None))["beta"])
           for t in (0, 198, 199, 999, 9_999)]     # the authors' iter_num = step + 1
  assert betas[0] == betas[1] == 1.0 and betas == sorted(betas) and betas[-1] > betas[2]
  np.testing.assert_allclose(betas[2], np.sqrt(2.0), rtol=1e-6)
  np.testing.assert_allclose(betas[3], np.sqrt(1 + 0.005 * 1000), rtol=1e-6)


def test_cnnh_stage_one_hand_off_fits_the_similarity_better_than_chance():
  config = baseline_config("cnnh")
  data = load_dataset(config.data)
  trainer = Trainer(config, data, 8, "/nonexistent-never-written", progress=False)
  targets = methods.get_method("cnnh").start_phase(trainer.run_context, trainer.plan[0],
                                                  trainer.states)
  h = np.asarray(targets.targets)
  assert h.shape == (64, 8) and set(np.unique(h)) <= {-1.0, 1.0}
  labels = data.train.labels.astype(np.float64)
  s_tilde = 2.0 * (labels @ labels.T > 0) - 1.0
  objective = np.sum((s_tilde - h @ h.T / 8) ** 2)
  chance = np.mean([np.sum((s_tilde - r @ r.T / 8) ** 2) for r in (
      np.where(np.random.default_rng(i).random((64, 8)) < 0.5, -1.0, 1.0) for i in range(5))])
  assert objective < 0.6 * chance


def _function_lengths(path):
  tree = ast.parse(open(path, encoding="utf-8").read())
  return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_trainer_functions_are_short_and_method_blind():
  lengths = _function_lengths(os.path.join(ROOT, "dseh_jax", "trainer.py"))
  assert max(lengths.values()) <= 80, lengths
  for folder in ("dseh_jax", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
      for name in files:
        if name.endswith(".py") and not dirpath.endswith("methods"):
          text = open(os.path.join(dirpath, name), encoding="utf-8").read()
          assert not re.search(r"""[=!]=\s*["'](%s)["']""" % "|".join(methods.NAMES), text), name
  for name in BASELINES:
    path = os.path.join(ROOT, "dseh_jax", "methods", f"{name}.py")
    assert sum(1 for _ in open(path, encoding="utf-8")) < 150
