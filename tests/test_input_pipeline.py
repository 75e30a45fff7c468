"""Image decoding, ImageArray, the prefetching iterators (SPEC §4) and feature extraction."""
import io
import os
import threading

import jax
import numpy as np
import pytest
from PIL import Image

from dseh_jax import input_pipeline as ip
from dseh_jax import models, pretrained
from dseh_jax import train_steps as ts
from dseh_jax.data.splits import RetrievalData, Split
from scripts import load_script
from fixtures_vggf import (SMALL_CONV_FEATURES, SMALL_FC_UNITS, make_vggf_layers,
                           mcn_forward, write_vggf_mat)



def encode(array: np.ndarray, fmt: str = "PNG", mode=None) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array, mode=mode).save(buf, fmt)
  return buf.getvalue()


def random_rgb(rng, h, w) -> np.ndarray:
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- decoding

def test_decode_at_target_size_is_the_exact_pixels():
  img = random_rgb(np.random.default_rng(0), 32, 32)
  out = ip.decode_image(encode(img), image_size=32)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, img)


def test_decode_resizes_bilinearly_and_centre_crops():
  rng = np.random.default_rng(1)
  img = random_rgb(rng, 45, 60)
  data = encode(img)
  want = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR))
  np.testing.assert_array_equal(ip.decode_image(data, image_size=32), want)
  big = np.asarray(Image.fromarray(img).resize((40, 40), Image.BILINEAR))
  np.testing.assert_array_equal(ip.decode_image(data, image_size=32, resize_to=40),
                                big[4:36, 4:36])
  # Constant images stay constant through any resize and crop.
  flat = np.full((37, 53, 3), (10, 200, 77), np.uint8)
  out = ip.decode_image(encode(flat), image_size=24, resize_to=30)
  assert out.shape == (24, 24, 3)
  assert np.all(out == np.array([10, 200, 77], np.uint8))
  with pytest.raises(ValueError, match="resize_to=20 is smaller"):
    ip.decode_image(data, image_size=32, resize_to=20)


def test_grey_palette_rgba_and_cmyk_become_rgb():
  rng = np.random.default_rng(2)
  grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
  np.testing.assert_array_equal(ip.decode_image(encode(grey), image_size=16),
                                np.repeat(grey[..., None], 3, axis=-1))
  rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
  np.testing.assert_array_equal(ip.decode_image(encode(rgba), image_size=16), rgba[..., :3])
  palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
  index = rng.integers(0, 256, (16, 16), dtype=np.uint8)
  p_img = Image.fromarray(index, mode="P")
  p_img.putpalette(palette.ravel().tolist())
  buf = io.BytesIO()
  p_img.save(buf, "PNG")
  np.testing.assert_array_equal(ip.decode_image(buf.getvalue(), image_size=16),
                                palette[index])
  cmyk = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
  got = ip.decode_image(encode(cmyk, "TIFF", mode="CMYK"), image_size=16).astype(float)
  want = (255.0 - cmyk[..., :3]) * (255.0 - cmyk[..., 3:]) / 255.0
  np.testing.assert_allclose(got, want, atol=1.0)


def test_corrupt_truncated_and_missing_files_name_the_item(tmp_path):
  rng = np.random.default_rng(3)
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "good.jpg").write_bytes(encode(random_rgb(rng, 40, 40), "JPEG"))
  (tmp_path / "a" / "junk.jpg").write_bytes(b"\x00not an image")
  full = encode(random_rgb(rng, 64, 64), "JPEG")
  (tmp_path / "a" / "cut.jpg").write_bytes(full[:len(full) // 2])
  files = ip.FileBytes(str(tmp_path), ["a/good.jpg", "a/junk.jpg", "a/cut.jpg", "a/gone.jpg"])
  images = ip.ImageArray(files, image_size=16, num_threads=2)
  assert images[0].shape == (16, 16, 3)
  with pytest.raises(ValueError, match=r"a/junk\.jpg: cannot decode"):
    images[1]
  with pytest.raises(ValueError, match=r"a/cut\.jpg: cannot decode"):
    images[[0, 2]]
  with pytest.raises(ValueError, match=r"a/gone\.jpg: image file not found"):
    images[3:]
  with pytest.raises(ValueError, match=r"item 1: cannot decode"):
    ip.ImageArray([full, b"xx"], image_size=16)[1]


# --------------------------------------------------------------------------- ImageArray

@pytest.fixture(scope="module")
def pngs():
  rng = np.random.default_rng(4)
  raw = [random_rgb(rng, int(rng.integers(20, 40)), int(rng.integers(20, 40)))
         for _ in range(7)]
  return raw, [encode(r) for r in raw]


def reference_images(raw, side, mean):
  """Independent decode: Pillow bilinear resize, float64 mean subtraction."""
  return np.stack([np.asarray(Image.fromarray(r).resize((side, side), Image.BILINEAR),
                              np.float64) - mean for r in raw])


def test_image_array_interface_and_every_index_form(pngs):
  raw, data = pngs
  arr = ip.ImageArray(data, image_size=12, num_threads=3)
  want = reference_images(raw, 12, ip.VGG_F_RGB_MEAN.astype(np.float64))
  assert arr.shape == (7, 12, 12, 3) and arr.dtype == np.float32 and arr.ndim == 4
  assert len(arr) == 7
  np.testing.assert_allclose(arr[2], want[2], atol=1e-4)
  np.testing.assert_allclose(arr[-1], want[6], atol=1e-4)
  np.testing.assert_allclose(arr[1:6:2], want[1:6:2], atol=1e-4)
  np.testing.assert_allclose(arr[np.array([5, 0, 5])], want[[5, 0, 5]], atol=1e-4)
  np.testing.assert_allclose(arr[[3, -2]], want[[3, 5]], atol=1e-4)
  mask = np.array([True, False, False, True, False, False, True])
  np.testing.assert_allclose(arr[mask], want[mask], atol=1e-4)
  everything = np.asarray(arr)
  assert everything.dtype == np.float32 and everything.shape == (7, 12, 12, 3)
  np.testing.assert_allclose(everything, want, atol=1e-4)
  assert arr[np.array([], np.int64)].shape == (0, 12, 12, 3)
  single = ip.ImageArray(data, image_size=12, num_threads=1)
  np.testing.assert_array_equal(single[[6, 1, 2]], arr[[6, 1, 2]])
  with pytest.raises(IndexError, match="index 7 is out of range"):
    arr[7]
  with pytest.raises(IndexError, match="index -9 is out of range"):
    arr[[0, -9]]
  with pytest.raises(IndexError, match="1-d int/bool array"):
    arr[np.array([0.5])]


def test_rgb_mean_and_average_image_are_subtracted(pngs):
  raw, data = pngs
  rgb = np.array([100.0, 50.0, 25.0])
  np.testing.assert_allclose(ip.ImageArray(data, image_size=10, mean=rgb)[:],
                             reference_images(raw, 10, rgb), atol=1e-4)
  average = np.random.default_rng(5).uniform(0, 255, (10, 10, 3)).astype(np.float32)
  np.testing.assert_allclose(ip.ImageArray(data, image_size=10, mean=average)[:],
                             reference_images(raw, 10, average.astype(np.float64)),
                             atol=1e-4)
  # A 224×224 average image is resized to the output side; a constant one stays constant.
  constant = np.broadcast_to(np.array([90.0, 80.0, 70.0], np.float32), (224, 224, 3))
  arr = ip.ImageArray(data, image_size=10, mean=constant).with_mean(constant)
  np.testing.assert_allclose(arr[:], reference_images(raw, 10, np.array([90.0, 80.0, 70.0])),
                             atol=1e-3)
  zero = ip.ImageArray(data, image_size=10, mean=np.zeros(3))
  np.testing.assert_allclose(zero[:], reference_images(raw, 10, 0.0), atol=0)
  with pytest.raises(ValueError, match=r"mean has shape \(4,\)"):
    ip.ImageArray(data, mean=np.zeros(4))


# --------------------------------------------------------------------------- iterators

def test_padded_eval_batches_cover_every_row_once():
  x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
  batches = list(ip.padded_eval_batches(x, 4))
  assert [b.num_real for b in batches] == [4, 4, 2]
  assert all(b.inputs.shape == (4, 3) for b in batches)
  assert [int(b.mask.sum()) for b in batches] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b.inputs[b.mask] for b in batches]), x)
  np.testing.assert_array_equal(batches[-1].inputs[2:], np.stack([x[8], x[8]]))
  exact = list(ip.padded_eval_batches(x[:8], 4))
  assert [b.num_real for b in exact] == [4, 4]


def test_prefetch_eval_batches_match_the_plain_path(pngs):
  _, data = pngs
  arr = ip.ImageArray(data, image_size=8, num_threads=2)
  plain = list(ip.padded_eval_batches(arr, 4))
  fetched = list(ip.prefetch_eval_batches(arr, 4, 2))
  assert len(fetched) == len(plain) == 2
  for f, p in zip(fetched, plain):
    assert isinstance(f.inputs, jax.Array) and f.inputs.shape == (2, 2, 8, 8, 3)
    assert len(f.inputs.sharding.device_set) == 2
    np.testing.assert_array_equal(np.asarray(f.inputs).reshape(p.inputs.shape), p.inputs)
    assert f.num_real == p.num_real
  with pytest.raises(ValueError, match="not divisible by 2 devices"):
    ip.prefetch_eval_batches(arr, 3, 2)


def test_prefetch_train_batches_are_the_plain_batches_in_order():
  rng = np.random.default_rng(6)
  inputs = rng.standard_normal((20, 5)).astype(np.float32)
  order = rng.permutation(20)

  def make(s):
    index = order[s * 4:(s + 1) * 4]
    return {"inputs": inputs[index], "index": index.astype(np.int32)}

  got = list(ip.prefetch_train_batches(make, 5, 2))
  assert len(got) == 5
  for s, batch in enumerate(got):
    want = ts.shard_batch(make(s), 2)
    for k in want:
      assert batch[k].shape == want[k].shape
      np.testing.assert_array_equal(np.asarray(batch[k]), want[k])


def test_prefetch_train_batches_without_the_device_axis_on_one_device():
  rng = np.random.default_rng(7)
  inputs = rng.standard_normal((12, 3)).astype(np.float32)
  make = lambda s: {"inputs": inputs[s * 4:(s + 1) * 4], "index": np.arange(s * 4, s * 4 + 4)}
  got = list(ip.prefetch_train_batches(make, 3, 1, device_axis=False))
  for s, batch in enumerate(got):
    assert batch["inputs"].shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(batch["inputs"]), make(s)["inputs"])
  with pytest.raises(ValueError, match="device_axis=False needs one device, not 2"):
    list(ip.prefetch_train_batches(make, 3, 2, device_axis=False))


def test_background_errors_reach_the_consumer_and_closing_stops_the_thread():
  def produce(t):
    if t == 3:
      raise ValueError("bad item 3")
    return t

  seen = []
  with pytest.raises(ValueError, match="bad item 3"):
    for item in ip.background_iterator(produce, 10):
      seen.append(item)
  assert seen == [0, 1, 2]
  it = ip.background_iterator(lambda t: t, 1000, depth=2)
  assert next(it) == 0
  it.close()
  assert not any(t.name == "batch-producer" and t.is_alive() for t in threading.enumerate())


def test_predict_in_batches_reads_image_arrays_like_arrays(pngs):
  _, data = pngs
  arr = ip.ImageArray(data, image_size=8)
  predict = ts.make_predict_fn(lambda v, x: {"sum": x.sum(axis=(1, 2, 3)), "first": x[:, 0]})
  params = ts.replicate({})
  out = ts.predict_in_batches(predict, params, arr, 4, 2)
  dense = np.asarray(arr).astype(np.float64)
  np.testing.assert_allclose(out["sum"], dense.sum(axis=(1, 2, 3)), rtol=1e-5)
  np.testing.assert_array_equal(out["first"], np.asarray(arr)[:, 0])


# --------------------------------------------------------------------------- features

SMALL_SPEC = pretrained.scaled_spec(models.CNNF, SMALL_CONV_FEATURES, SMALL_FC_UNITS)


def _load_script():
  return load_script("extract_features")


@pytest.fixture(scope="module")
def jpeg_data():
  """A tiny image dataset (JPEG bytes, 224×224 ImageArray inputs) and the raw JPEGs."""
  rng = np.random.default_rng(8)
  sizes = {"train": 4, "query": 3, "database": 5}
  splits, raw, next_id = {}, {}, 0
  for name, n in sizes.items():
    jpegs = [encode(random_rgb(rng, 30, 40), "JPEG") for _ in range(n)]
    labels = rng.integers(0, 2, (n, 3)).astype(np.float32)
    splits[name] = Split(ip.ImageArray(jpegs), labels,
                         np.arange(next_id, next_id + n, dtype=np.int64))
    raw[name] = jpegs
    next_id += n
  data = RetrievalData("jpegs", splits["train"], splits["query"], splits["database"],
                       ("a", "b", "c"))
  return data, raw


def test_extract_features_matches_numpy_forward_of_each_decoded_image(tmp_path, jpeg_data):
  data, raw = jpeg_data
  layers = make_vggf_layers(np.random.default_rng(9), SMALL_CONV_FEATURES, SMALL_FC_UNITS)
  average = np.random.default_rng(10).uniform(80, 140, (224, 224, 3)).astype(np.float32)
  path = tmp_path / "vggf.mat"
  write_vggf_mat(path, layers, average_image=average)
  loaded = pretrained.load_vggf(path, SMALL_SPEC)
  script = _load_script()
  feats = script.extract_features(data, loaded.params, spec=SMALL_SPEC, batch_size=4,
                                  mean=loaded.average_image, progress=False)
  for name, n in (("train", 4), ("query", 3), ("database", 5)):
    assert feats[f"x_{name}"].shape == (n, SMALL_FC_UNITS[-1])
    assert feats[f"x_{name}"].dtype == np.float32
    np.testing.assert_array_equal(feats[f"y_{name}"], getattr(data, name).labels)
    np.testing.assert_array_equal(feats[f"ids_{name}"], getattr(data, name).ids)
  for name, i in (("query", 2), ("database", 4), ("train", 0)):
    pixels = np.asarray(Image.open(io.BytesIO(raw[name][i])).convert("RGB")
                        .resize((224, 224), Image.BILINEAR), np.float64)
    want = mcn_forward(layers, pixels - average).reshape(-1)
    err = np.max(np.abs(feats[f"x_{name}"][i] - want)) / np.max(np.abs(want))
    assert err <= 1e-4, (name, i, err)

  out = tmp_path / "sub" / "feats.npz"
  script.write_features(str(out), feats)
  with np.load(out) as saved:
    assert sorted(saved.files) == sorted(feats)
    np.testing.assert_array_equal(saved["x_database"], feats["x_database"])
  assert [p for p in os.listdir(out.parent) if p.startswith(".tmp")] == []


def test_extract_features_cli(tmp_path, monkeypatch, jpeg_data):
  data, _ = jpeg_data
  layers = make_vggf_layers(np.random.default_rng(11), SMALL_CONV_FEATURES, SMALL_FC_UNITS)
  weights = tmp_path / "imagenet-vgg-f.mat"
  write_vggf_mat(weights, layers, layout="old",
                 average_image=np.full((224, 224, 3), 100, np.float32))
  monkeypatch.setitem(models.BACKBONES, "cnnf", SMALL_SPEC)
  from dseh_jax.data import registry
  seen = {}

  def fake_load(data_config, seed=None):
    seen["data_dir"], seen["seed"] = data_config["kwargs"]["data_dir"], seed
    return data

  monkeypatch.setattr(registry, "load_dataset", fake_load)
  script = _load_script()
  out = tmp_path / "feats.npz"
  assert script.main(["--config", "nuswide21", "--config.data.kwargs.data_dir=/data/nus",
                      "--weights", str(weights), "--out", str(out), "--batch_size", "6",
                      "--no_progress"]) == 0
  assert seen == {"data_dir": "/data/nus", "seed": 0}
  loaded = pretrained.load_vggf(weights, SMALL_SPEC)
  want = script.extract_features(data, loaded.params, spec=SMALL_SPEC, batch_size=4,
                                 mean=loaded.average_image, progress=False)
  with np.load(out) as saved:
    assert sorted(saved.files) == sorted(want)
    for k in want:
      np.testing.assert_allclose(saved[k], want[k], rtol=1e-5, atol=1e-5)
