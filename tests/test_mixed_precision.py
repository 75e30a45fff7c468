"""``imgnet.compute_dtype="bfloat16"``: layers compute in bfloat16, parameters, outputs and
losses stay float32, and a trained run works; float32 runs keep their identity."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import models, run_identity
from dseh_jax.data.registry import load_dataset
from dseh_jax.experiment import train_and_evaluate
from test_trainer import tiny_config


def _imgnet(dtype):
  return models.ImgNet(num_bits=8, backbone=models.BACKBONES["mini_cnnf"], semantic_units=16,
                       dtype=dtype)


def test_bfloat16_layers_keep_float32_parameters_and_outputs():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
  params = _imgnet(jnp.float32).init(jax.random.PRNGKey(1), x)["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
  full = _imgnet(jnp.float32).apply({"params": params}, x)
  half = _imgnet(jnp.bfloat16).apply({"params": params}, x)
  assert half.semantic.dtype == jnp.float32 and half.hash_logits.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: close to, not equal to, the float32 outputs.
  assert not np.array_equal(np.asarray(half.hash_logits), np.asarray(full.hash_logits))
  scale = float(jnp.max(jnp.abs(full.hash_logits)))
  assert float(jnp.max(jnp.abs(half.hash_logits - full.hash_logits))) < 0.05 * scale
  grads = jax.grad(lambda p: jnp.sum(_imgnet(jnp.bfloat16).apply({"params": p}, x)
                                     .hash_logits ** 2))(params)
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.slow
def test_a_bfloat16_run_trains_and_float32_keeps_the_old_identity(tmp_path):
  config = tiny_config()
  config.imgnet.compute_dtype = "bfloat16"
  config.labnet.epochs_per_round = config.imgnet.epochs_per_round = (1,)
  data = load_dataset(config.data)
  result = train_and_evaluate(config, data, str(tmp_path / "run"), progress=False)
  entry = result["bits"]["8"]
  assert 0.0 < entry["map"] <= 1.0 and np.isfinite(entry["map"])
  view = run_identity.training_view(result["config"])
  assert view["imgnet.compute_dtype"] == "bfloat16"
  config.imgnet.compute_dtype = "float32"
  assert "imgnet.compute_dtype" not in run_identity.training_view(
      json.loads(config.to_json()))
