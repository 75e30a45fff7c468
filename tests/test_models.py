"""Models: LRN against a numpy loop, parameter naming, shapes, per-example dropout."""
import jax
import jax.numpy as jnp
import numpy as np

from dseh_jax import models


def _np_lrn(x, r, bias, alpha, beta):
  x = x.astype(np.float64)
  out = np.empty_like(x)
  c = x.shape[-1]
  for ch in range(c):
    lo, hi = max(0, ch - r), min(c, ch + r + 1)
    denom = (bias + alpha * np.sum(x[..., lo:hi] ** 2, axis=-1)) ** beta
    out[..., ch] = x[..., ch] / denom
  return out


def test_local_response_norm_matches_numpy_loop():
  x = np.random.default_rng(0).standard_normal((3, 4, 5, 9)).astype(np.float32) * 20
  p = models.LRNParams(depth_radius=2, bias=2.0, alpha=1e-3, beta=0.75)
  got = np.asarray(models.local_response_norm(jnp.asarray(x), p))
  np.testing.assert_allclose(got, _np_lrn(x, 2, 2.0, 1e-3, 0.75), rtol=1e-5)


def test_cnnf_parameter_tree_names_pretrained_and_new_parts():
  model = models.ImgNet(num_bits=48)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  params = shapes["params"]
  assert sorted(params) == ["backbone", "head"]
  assert sorted(params["backbone"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                        "fc7"]
  assert params["backbone"]["conv1"]["kernel"].shape == (11, 11, 3, 64)
  assert params["backbone"]["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)
  assert params["head"]["semantic"]["kernel"].shape == (4096, 512)
  assert params["head"]["hash"]["kernel"].shape == (512, 48)


def test_feature_mode_head_takes_any_width():
  model = models.ImgNet(num_bits=16, backbone=None)
  x = jnp.ones((5, 37))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert sorted(variables["params"]) == ["head"]
  out = model.apply(variables, x)
  assert out.semantic.shape == (5, 512) and out.hash_logits.shape == (5, 16)
  assert float(jnp.min(out.semantic)) >= 0.0   # the semantic layer is a ReLU


def test_hash_layer_reads_pre_or_post_relu():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
  for pre in (False, True):
    head = models.SemanticHashHead(8, 3, hash_from_pre_relu=pre)
    v = head.init(jax.random.PRNGKey(0), x)
    _, logits = head.apply(v, x)
    p = v["params"]
    z = np.asarray(x, np.float64) @ np.asarray(p["semantic"]["kernel"]) + np.asarray(
        p["semantic"]["bias"])
    h_in = z if pre else np.maximum(z, 0)
    want = h_in @ np.asarray(p["hash"]["kernel"]) + np.asarray(p["hash"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=1e-6)


def test_labnet_outputs_and_label_head():
  net = models.LabNet(num_bits=12, num_classes=7, hidden_units=32, semantic_units=16,
                      label_activation="sigmoid", lrn=models.LRNParams())
  y = jnp.eye(7)[:3]
  v = net.init(jax.random.PRNGKey(0), y)
  out = net.apply(v, y)
  assert out.semantic.shape == (3, 16) and out.codes.shape == (3, 12)
  assert float(jnp.max(jnp.abs(out.codes))) < 1.0           # tanh
  assert 0.0 < float(jnp.min(out.label_pred)) and float(jnp.max(out.label_pred)) < 1.0


def _np_keep_mask(key, keep, size):
  """keep_mask's dyadic rule in numpy: the key's 32-bit words, cut into ``w``-bit fields
  from the least significant bit up, field < keep·2^w."""
  width = {0.5: 1, 0.25: 2, 0.75: 2, 0.125: 4, 0.375: 4, 5 / 256: 8}[keep]
  per_word = 32 // width
  words = np.asarray(jax.random.bits(key, (-(-size // per_word),), jnp.uint32), np.uint64)
  fields = [(int(wd) >> (width * f)) & ((1 << width) - 1) for wd in words
            for f in range(per_word)]
  return np.array(fields[:size]) < keep * 2 ** width


def test_keep_mask_dyadic_rates_read_bit_fields_of_the_keys_words():
  key = jax.random.PRNGKey(3)
  for keep in (0.5, 0.25, 0.75, 0.125, 0.375, 5 / 256):
    for shape in ((40,), (3, 7), (64,)):
      mask = np.asarray(models.keep_mask(key, keep, shape))
      assert mask.shape == shape and mask.dtype == bool
      np.testing.assert_array_equal(mask.reshape(-1),
                                    _np_keep_mask(key, keep, int(np.prod(shape))))


def test_keep_mask_rates_on_many_draws():
  """The kept fraction is within 5 standard errors of ``keep``, dyadic or not."""
  n = 200_000
  for keep in (0.5, 0.75, 0.125, 5 / 256, 0.9, 0.3):
    frac = float(np.mean(np.asarray(models.keep_mask(jax.random.PRNGKey(1), keep, (n,)))))
    assert abs(frac - keep) < 5 * np.sqrt(keep * (1 - keep) / n), (keep, frac)


def test_dyadic_width():
  assert [models.dyadic_width(p) for p in (0.5, 0.25, 0.75, 0.125, 1 / 256, 0.9, 1 / 512,
                                           0.0, 1.0)] == [1, 2, 2, 4, 8, None, None, None,
                                                          None]


def test_example_dropout_depends_only_on_each_examples_key():
  x = jnp.ones((4, 1000))
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  full = np.asarray(models.example_dropout(x, 0.5, keys))
  part = np.asarray(models.example_dropout(x[2:], 0.5, keys[2:]))
  np.testing.assert_array_equal(full[2:], part)
  kept = full != 0
  assert 0.4 < kept.mean() < 0.6
  np.testing.assert_allclose(full[kept], 2.0)               # inverted dropout scaling
  np.testing.assert_array_equal(np.asarray(models.example_dropout(x, 0.5, None)), 1.0)


def test_feature_mode_dropout_masks_inputs_per_example_and_only_in_training():
  """Feature mode drops the fc7 inputs as the image network drops fc7 (SPEC §4): at test
  time (no keys) it is the plain head; in training each example's kept inputs are scaled by
  1 / (1 - rate) and its mask depends only on its own key."""
  x = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32) + 3.0
  plain = models.ImgNet(num_bits=8, backbone=None, semantic_units=16)
  dropped = models.ImgNet(num_bits=8, backbone=None, semantic_units=16, feature_dropout=0.5)
  params = plain.init(jax.random.PRNGKey(0), x[:1])
  np.testing.assert_array_equal(np.asarray(dropped.apply(params, x).hash_logits),
                                np.asarray(plain.apply(params, x).hash_logits))
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(6))
  out = dropped.apply(params, x, dropout_keys=keys)
  # Recompute the masks independently and run the head on the masked inputs in float64.
  stream = jax.vmap(jax.random.fold_in, (0, None))(keys, models.FEATURE_DROPOUT_STREAM)
  keep = np.stack([_np_keep_mask(k, 0.5, 40) for k in stream])
  assert 0.3 < keep.mean() < 0.7
  head = params["params"]["head"]
  w1, b1 = (np.asarray(head["semantic"][n], np.float64) for n in ("kernel", "bias"))
  w2, b2 = (np.asarray(head["hash"][n], np.float64) for n in ("kernel", "bias"))
  semantic = np.maximum(np.where(keep, x / 0.5, 0.0) @ w1 + b1, 0.0)
  np.testing.assert_allclose(np.asarray(out.semantic), semantic, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(out.hash_logits), semantic @ w2 + b2, rtol=1e-4,
                             atol=1e-4)
  alone = dropped.apply(params, x[2:3], dropout_keys=keys[2:3])
  np.testing.assert_allclose(np.asarray(alone.hash_logits), np.asarray(out.hash_logits[2:3]),
                             rtol=1e-5, atol=1e-5)
