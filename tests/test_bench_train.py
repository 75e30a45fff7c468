"""experiments/bench_train.py (--quick) and its PyTorch reference against the JAX steps."""
import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import configs, models, networks
from dseh_jax import train_steps as ts
from scripts import load_script

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.slow
def test_quick_run_prints_the_table_and_writes_json(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert load_script("bench_train").main(["--quick", "--out", str(out)]) == 0
  result = json.loads(out.read_text())
  rows = {(r["step"], r["impl"]): r for r in result["rows"]}
  impls = ("jax.jit", "pmap_step") + (("pytorch",) if HAS_TORCH else ())
  assert set(rows) == {(s, i) for s in ("imgnet", "features", "labnet") for i in impls}
  for (step, impl), r in rows.items():
    assert r["devices"] == (2 if impl == "pmap_step" else 1)
    assert len(r["step_ms"]) == 3 and r["ms_per_step"] > 0 and r["first_call_s"] > 0
    assert r["samples_per_s"] == pytest.approx(1e3 * r["batch"] / r["ms_per_step"])
    if HAS_TORCH and impl != "pytorch":
      assert r["jax_over_torch"] == pytest.approx(
          rows[step, "pytorch"]["ms_per_step"] / r["ms_per_step"])
  assert set(result["versions"]) >= {"python", "jax", "jaxlib", "flax", "optax"}
  text = capsys.readouterr().out
  assert "| step | input | implementation |" in text and result["machine"]["cpu"] in text


# ------------------------------------------------------------------ torch == JAX

N, C, BITS, SEM, STEPS = 40, 5, 8, 16, 3


@pytest.fixture(scope="module")
def tr():
  pytest.importorskip("torch")
  return load_script("torch_reference")


def _bank_and_batches(labnet: bool, batch: int, seed=0):
  rng = np.random.default_rng(seed)
  labels = (rng.random((N, C)) < 0.3).astype(np.float32)
  labels[np.arange(N), rng.integers(0, C, N)] = 1.0
  semantic = rng.standard_normal((N, SEM)).astype(np.float32)
  codes = rng.standard_normal((N, BITS)) if labnet else rng.random((N, BITS)) < 0.5
  bank = (ts.LabNetBuffers if labnet else ts.LabNetTargets)(
      semantic, np.asarray(codes, np.float32), labels)
  index = [rng.choice(N, batch, replace=False).astype(np.int32) for _ in range(STEPS)]
  return bank, labels, index, rng


def _torch_bank(tr, bank):
  import torch
  codes = bank.codes if isinstance(bank, ts.LabNetBuffers) else bank.targets
  return tr.Bank(*(torch.from_numpy(np.array(x)) for x in (bank.semantic, codes, bank.labels)))


def _assert_same_params(model, params):
  named = dict(model.named_parameters())
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [p.key for p in path]
    kernel = np.asarray(leaf)
    ours = named[".".join(names[:-1]) + (".bias" if names[-1] == "bias" else ".weight")]
    want = kernel if names[-1] == "bias" else kernel.T
    np.testing.assert_allclose(ours.detach().numpy(), want, atol=1e-5)


def test_labnet_step_matches_jax(tr):
  import torch
  config = configs.get_config("nuswide21")
  config.labnet.hidden_units, config.labnet.semantic_units = 32, SEM
  config.labnet.optimizer.lr = 1e-2                 # Adam's steps show in later losses
  state = networks.create_labnet_state(config, C, BITS, N, jax.random.PRNGKey(0))
  loss_kwargs = networks.labnet_loss_kwargs(config)
  model = tr.LabNet(C, BITS, 32, SEM)
  tr.load_flax_params(model, state.params)
  opt = tr.make_adam(model, config.labnet.optimizer.lr)
  bank, labels, index, _ = _bank_and_batches(labnet=True, batch=6)
  t_bank = _torch_bank(tr, bank)
  step = jax.jit(functools.partial(ts.labnet_train_step, loss_kwargs=loss_kwargs,
                                   axis_name=None))
  for idx in index:
    batch = {"inputs": labels[idx], "labels": labels[idx], "index": idx}
    state, bank, metrics = step(state, bank, batch, jax.random.PRNGKey(1))
    ours = tr.labnet_step(model, opt, t_bank, torch.from_numpy(labels[idx]),
                          torch.from_numpy(idx).long(), loss_kwargs)
    for name in ("loss", "j1", "j2", "j3", "j4"):
      assert float(ours[name]) == pytest.approx(float(metrics[name]), abs=1e-4), name
  np.testing.assert_allclose(t_bank.semantic.numpy(), bank.semantic, atol=1e-4)
  np.testing.assert_allclose(t_bank.codes.numpy(), bank.codes, atol=1e-4)
  _assert_same_params(model, state.params)


def test_feature_mode_imgnet_step_matches_jax(tr):
  import torch
  d = 12
  config = configs.get_config("nuswide21")
  config.imgnet.backbone, config.imgnet.semantic_units = "none", SEM
  assert config.imgnet.feature_dropout == 0.5       # the recipe's dropout on the features
  state = networks.create_imgnet_state(config, (d,), BITS, 1000, jax.random.PRNGKey(0))
  loss_kwargs = networks.imgnet_loss_kwargs(config)
  c = config.imgnet
  model = tr.ImgNet(BITS, in_features=d, semantic_units=SEM,
                    hash_from_pre_relu=c.hash_from_pre_relu, feature_dropout=0.5)
  tr.load_flax_params(model, state.params)
  opt = tr.make_adam(model, c.optimizer.lr, c.optimizer.lr_mult_pretrained,
                     c.optimizer.lr_mult_new)
  bank, labels, index, rng = _bank_and_batches(labnet=False, batch=6)
  t_bank = _torch_bank(tr, bank)
  step = jax.jit(functools.partial(ts.imgnet_train_step, loss_kwargs=loss_kwargs,
                                   axis_name=None))
  for i, idx in enumerate(index):
    x = rng.standard_normal((len(idx), d)).astype(np.float32)
    key = jax.random.PRNGKey(i)
    state, bank, metrics = step(state, bank, {"inputs": x, "labels": labels[idx],
                                              "index": idx}, key)
    # The step's masks: example keys, stream 1, then the feature-dropout stream.
    keys = jax.vmap(jax.random.fold_in, (0, None))(
        ts.stream_keys(ts.example_keys(key, idx), 1), models.FEATURE_DROPOUT_STREAM)
    keep = jax.vmap(lambda k: models.keep_mask(k, 0.5, (d,)))(keys)
    ours = tr.imgnet_step(model, opt, t_bank, torch.from_numpy(x),
                          torch.from_numpy(labels[idx]), torch.from_numpy(idx).long(),
                          loss_kwargs, keep=[torch.from_numpy(np.array(keep))])
    for name in ("loss", "j1", "j2", "bit_agreement"):
      assert float(ours[name]) == pytest.approx(float(metrics[name]), abs=1e-4), name
  _assert_same_params(model, state.params)


def test_cnnf_forward_and_parameter_groups_match_jax(tr):
  import torch
  model = models.ImgNet(num_bits=BITS, backbone=models.CNNF, semantic_units=SEM)
  x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
  want = model.apply({"params": params}, x)
  ours = tr.ImgNet(BITS, spec=models.CNNF, image_size=64, semantic_units=SEM)
  tr.load_flax_params(ours, params)
  with torch.no_grad():
    semantic, logits = ours.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(semantic.numpy(), want.semantic, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(logits.numpy(), want.hash_logits, atol=1e-4, rtol=1e-4)
  groups = tr.make_adam(ours, 1e-3, 0.1, 1.0).param_groups
  assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
  assert [len(g["params"]) for g in groups] == [14, 4]      # conv1–5, fc6–7; semantic, hash


def test_the_pytorch_child_gets_the_arguments_less_out():
  bench = load_script("bench_train")
  assert bench._without_out(["--quick", "--out", "a.json", "--steps", "3"]) == [  # pylint: disable=protected-access
      "--quick", "--steps", "3"]
  assert bench._without_out(["--out=a.json", "--only", "labnet"]) == ["--only", "labnet"]  # pylint: disable=protected-access
