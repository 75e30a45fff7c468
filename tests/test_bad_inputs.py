"""Bad inputs to ``experiments/train_dseh.py``: each is refused with one line on stderr that
names the file or field and the fix, before any training where it can be found then, and
without losing anything an earlier run wrote (results, codes, checkpoints).

Most runs call the command line's ``main(argv)`` in this process (no JAX start-up per run);
a kill and the lock test need a second process. The trained runs are feature-mode runs on
a small ``.npz`` features file (one round, two epochs per network, 8 bits), one image run
on a list-file dataset of 16×16 JPEGs.
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax import faults
from scripts import ROOT, load_script

TINY = ["labnet.hidden_units=32", "labnet.semantic_units=16", "imgnet.semantic_units=16",
        "labnet.batch_size=16", "imgnet.batch_size=16", "eval.batch_size=64",
        "labnet.epochs_per_round=(2,)", "imgnet.epochs_per_round=(2,)",
        "checkpoint_min_seconds=0.0", "on_collapse=warn"]
NOT_COMPARED = ("log.txt", ".lock")          # appended to / rewritten by every run


def feature_arrays(seed: int) -> dict:
  """Features that carry the labels (``y @ A`` + noise, so ImgNet can fit LabNet's codes);
  the database has no item of class 3, and the first two queries only class 3."""
  rng = np.random.default_rng(seed)
  c, d = 4, 16
  a = rng.standard_normal((c, d))
  arrays = {}
  for split, n in (("train", 64), ("query", 16), ("database", 48)):
    y = (rng.random((n, c)) < 0.4).astype(np.float64)
    y[np.arange(n), rng.integers(0, c, n)] = 1
    if split == "database":
      y[:, 3] = 0
      y[y.sum(1) == 0, 0] = 1
    if split == "query":
      y[:2] = [0, 0, 0, 1]
    arrays[f"x_{split}"] = (y @ a + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
    arrays[f"y_{split}"] = y
  return arrays


def sets(items):
  """``--config.FIELD=VALUE`` overrides (config_flags) of ``["FIELD=VALUE", ...]``."""
  return [f"--config.{item}" for item in items]


@pytest.fixture(scope="module")
def cli_module():
  return load_script("train_dseh")


class Cli:
  """``main(argv)`` of train_dseh.py in this process, with its stdout and stderr."""

  def __init__(self, module, capsys):
    self.module, self.capsys = module, capsys

  def __call__(self, *argv):
    self.capsys.readouterr()
    rc = self.module.main([*map(str, argv), "--no_progress"])
    out, err = self.capsys.readouterr()
    return rc, out, err


@pytest.fixture
def cli(cli_module, capsys):
  return Cli(cli_module, capsys)


def one_line_error(rc, err, *needles):
  """``err`` is one ``error:`` line (exit 2, no traceback) containing every needle."""
  lines = err.strip().splitlines()
  assert rc == 2, err
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert "Traceback" not in err
  for needle in needles:
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
  return lines[0]


def snapshot(workdir) -> dict:
  """``{relative path: digest}`` of every file under ``workdir`` (logs and lock aside)."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), workdir)
      if rel not in NOT_COMPARED:
        with open(os.path.join(root, name), "rb") as f:
          out[rel] = hashlib.sha256(f.read()).hexdigest()
  return out


def results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def trained(workdir):
  """What a bad input must not have created: bit folders, checkpoints, run.json."""
  return sorted(p for p in os.listdir(workdir) if p.startswith("bits") or p == "run.json"
                ) if os.path.isdir(workdir) else []


class Base:
  """The feature file (kept at one path: its path is part of the training config) and a
  finished 8-bit run on it; tests copy the run, and change the file only in ``changed``."""

  def __init__(self, root):
    self.path = os.path.join(root, "features.npz")
    self.arrays = feature_arrays(0)
    fx.write_feature_file(self.path, self.arrays)
    with open(self.path, "rb") as f:
      self.original = f.read()
    # The README's feature-mode command, on the default config (--config digits).
    self.readme = ["--config.data.name=features", f"--config.data.kwargs.path={self.path}",
                   "--config.imgnet.backbone=none"]
    self.features = [*self.readme, *sets(TINY)]        # every code length
    self.args = ["--config.bits=8", *self.features]
    self.workdir = os.path.join(root, "run")

  def copy(self, dest) -> str:
    shutil.copytree(self.workdir, dest)
    return str(dest)

  @contextlib.contextmanager
  def changed(self):
    """The feature file holds other numbers (same path, same shapes) inside the block."""
    fx.write_feature_file(self.path, feature_arrays(1))
    try:
      yield
    finally:
      with open(self.path, "wb") as f:
        f.write(self.original)


@pytest.fixture(scope="module")
def base(tmp_path_factory, cli_module):
  b = Base(str(tmp_path_factory.mktemp("base")))
  out, err = io.StringIO(), io.StringIO()        # capsys is per test; this is per module
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = cli_module.main(["--workdir", b.workdir, *b.args, "--no_progress"])
  b.stdout, b.stderr = out.getvalue(), err.getvalue()
  assert rc == 0, b.stderr
  return b


# ----------------------------------------------------------------- 5 and 9: the base run

def test_readme_feature_command_on_the_default_config_works(base):
  # It once failed with "load_feature_file() got an unexpected keyword argument 'seed'"
  # (the digits config carries data.kwargs.seed).
  r = results(base.workdir)
  assert r["config"]["data"]["kwargs"]["seed"] == 0
  assert r["dataset"]["name"] == "features" and r["dataset"]["train"] == 64
  assert 0.0 <= r["bits"]["8"]["map"] <= 1.0
  assert os.path.exists(os.path.join(base.workdir, "bits8", "codes.npz"))
  assert "Traceback" not in base.stderr


def test_queries_without_relevant_items_are_counted_on_screen_and_in_results(base):
  q, db = base.arrays["y_query"], base.arrays["y_database"]
  want = int(np.sum((q @ db.T).max(axis=1) == 0))
  assert want >= 2                         # the two class-3 queries at least
  assert results(base.workdir)["bits"]["8"]["zero_relevant_queries"] == want
  assert f"{want} queries have no relevant database item" in base.stdout


# ----------------------------------------------------------------- 1: changed data

def test_changed_data_file_refuses_a_rerun_of_a_finished_run(base, cli, tmp_path):
  workdir = base.copy(tmp_path / "run")
  before = snapshot(workdir)
  with base.changed():
    rc, _, err = cli("--workdir", workdir, *base.args)
  one_line_error(rc, err, "RunMismatchError", "run.json", "different data", "fingerprint",
                 base.path, "restore the original data", "another --workdir")
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_changed_data_file_refuses_to_resume_a_killed_run(base, cli, tmp_path):
  workdir = str(tmp_path / "killed")
  env = dict(os.environ, JAX_PLATFORMS="cpu", **{faults.ENV: "epoch_end:3"})
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_dseh.py"),
         "--workdir", workdir, *base.args, "--no_progress"]
  got = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert got.returncode == -signal.SIGKILL, got.stderr[-3000:]
  ckpt = os.path.join(workdir, "bits8", "checkpoints")
  assert sorted(p for p in os.listdir(ckpt) if p.isdigit()) == ["1", "2"]
  before = snapshot(workdir)
  with base.changed():
    rc, _, err = cli("--workdir", workdir, *base.args)
  one_line_error(rc, err, "run.json", "different data", "fingerprint", base.path)
  assert snapshot(workdir) == before
  assert not os.path.exists(os.path.join(workdir, "bits8", "codes.npz"))
  # Without run.json (a workdir of an older version) the checkpoint itself refuses.
  os.remove(os.path.join(workdir, "run.json"))
  with base.changed():
    rc, _, err = cli("--workdir", workdir, *base.args)
  one_line_error(rc, err, os.path.join(workdir, "bits8", "checkpoints", "2"),
                 "different data", base.path)
  ckpt_files = {k: v for k, v in before.items() if "checkpoints" in k}
  assert {k: v for k, v in snapshot(workdir).items() if "checkpoints" in k} == ckpt_files
  assert not os.path.exists(os.path.join(workdir, "run.json"))   # the refused run not kept
  # With the original data back, the same command resumes and finishes.
  rc, _, err = cli("--workdir", workdir, *base.args)
  assert rc == 0, err
  assert os.path.exists(os.path.join(workdir, "bits8", "codes.npz"))


# ----------------------------------------------------------------- 2: changed fields

def test_changed_training_field_is_refused_naming_both_values(base, cli, tmp_path):
  workdir = base.copy(tmp_path / "run")
  before = snapshot(workdir)
  rc, _, err = cli("--workdir", workdir, *base.args, "--config.labnet.optimizer.lr=0.01")
  one_line_error(rc, err, "different training config", "labnet.optimizer.lr: 0.0001 → 0.01",
                 "another --workdir")
  assert snapshot(workdir) == before


def test_changed_eval_field_reevaluates_without_training(base, cli, tmp_path):
  workdir = base.copy(tmp_path / "run")
  before = snapshot(workdir)
  old = results(workdir)["bits"]["8"]
  assert "map@1000" in old
  rc, out, err = cli("--workdir", workdir, *base.args, "--config.eval.top_k=5")
  assert rc == 0, err
  assert "re-evaluating under the new eval settings" in out
  new = results(workdir)["bits"]["8"]
  assert "map@5" in new and "map@1000" not in new and new["eval"]["eval.top_k"] == 5
  assert new["map"] == old["map"]                 # the same codes under MAP@all
  assert new["wall_seconds"] == old["wall_seconds"]
  after = snapshot(workdir)
  changed = {k for k in before if before[k] != after.get(k)} | (set(after) - set(before))
  assert changed == {"results.json", os.path.join("bits8", "curves.json")}


# ----------------------------------------------------------------- 3: bit lengths

@pytest.mark.slow
def test_other_bit_lengths_keep_and_skip_the_finished_ones(base, cli, tmp_path):
  workdir = base.copy(tmp_path / "run")
  eight = results(workdir)["bits"]["8"]
  bits8 = {k: v for k, v in snapshot(workdir).items() if k.startswith("bits8")}

  rc, _, err = cli("--workdir", workdir, *base.features, "--config.bits=7")
  assert rc == 0, err
  r = results(workdir)
  assert set(r["bits"]) == {"7", "8"} and r["bits"]["8"] == eight

  rc, out, err = cli("--workdir", workdir, *base.features, "--config.bits=8,16")
  assert rc == 0, err
  assert "8 bits: already done, skipping" in out
  assert "resuming" not in out
  r = results(workdir)
  assert set(r["bits"]) == {"7", "8", "16"} and r["bits"]["8"] == eight
  assert os.path.exists(os.path.join(workdir, "bits16", "codes.npz"))
  assert {k: v for k, v in snapshot(workdir).items() if k.startswith("bits8")} == bits8


# ----------------------------------------------------------------- 4: bad fields

BAD = [
    (["--config.eval.zero_relevant=skipp"], ["eval.zero_relevant='skipp'", "count_as_zero"]),
    (["--config.eval.ties=('stabel',)"], ["eval.ties=('stabel',)", "'stable'"]),
    (["--config.eval.top_k=-1"], ["eval.top_k=-1", "at least 0"]),
    (["--config.bits=0"], ["bits=(0,)", "1..4096"]),
    (["--config.bits=-8"], ["bits=(-8,)", "1..4096"]),
    (["--config.bits=abc"], ["bits=('abc',)", "1..4096"]),
    (["--config.unknown.key=1"], ["--config.unknown.key", "no field 'unknown'"]),
    (["--config.labnet.hiden_units=1"], ["labnet.hiden_units", "no such field",
                                         "did you mean 'hidden_units'"]),
    (["--config.labnet.epochs_per_round=(0,)"], ["labnet.epochs_per_round=(0,)",
                                                 "integers in 1"]),
    (["--config.labnet.batch_size=abc"], ["--config.labnet.batch_size=abc", "int()"]),
    (["--config", "digits:method=dpshh"], ["method='dpshh'", "'dpsh'"]),
    (["--config", "digits:variant=S,method=dpsh"], ["variant=S", "edit DSEH's"]),
    (["--config", "no/such/config.py"], ["no/such/config.py", "No such file"]),
    (["stray"], ["unexpected arguments ['stray']"]),
]


@pytest.fixture(scope="module")
def finished_copy(base, tmp_path_factory):
  return base.copy(tmp_path_factory.mktemp("finished") / "run")


@pytest.mark.parametrize("argv,needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_fields_are_refused_before_training(base, cli, tmp_path, finished_copy, argv,
                                                needles):
  fresh = str(tmp_path / "fresh")
  # After the base arguments, so that the bad value is the one that counts; the base's own
  # value of that field is left out (config_flags appends repeated tuple fields).
  field = argv[0].split("=")[0]
  args = [a for a in base.args if a.split("=")[0] != field]
  if argv[0] == "--config":                 # the config file comes before its overrides
    args, argv = [*argv, *args], []
  rc, _, err = cli("--workdir", fresh, *args, *argv)
  one_line_error(rc, err, *needles)
  assert trained(fresh) == []
  before = snapshot(finished_copy)
  rc, _, err = cli("--workdir", finished_copy, *args, *argv)
  one_line_error(rc, err, *needles)
  assert snapshot(finished_copy) == before


def test_misspelt_loader_option_is_refused_before_training(cli, tmp_path):
  workdir = str(tmp_path / "run")
  rc, _, err = cli("--workdir", workdir, "--config.bits=8", "--config.data.kwargs.num_trian=10")
  one_line_error(rc, err, "data.kwargs ['num_trian']", "'digits_mosaic'",
                 "did you mean data.kwargs.num_train")
  assert trained(workdir) == []


def test_features_without_feature_mode_name_the_backbone(base, cli, tmp_path):
  workdir = str(tmp_path / "run")
  rc, _, err = cli("--workdir", workdir, "--config.bits=8", "--config.data.name=features",
                   f"--config.data.kwargs.path={base.path}", *sets(TINY))
  one_line_error(rc, err, "imgnet.backbone='mini_cnnf'", "feature vectors",
                 "set imgnet.backbone=none")
  assert trained(workdir) == []


# ----------------------------------------------------------------- 6: unreadable images

@pytest.fixture(scope="module")
def broken_lists(tmp_path_factory):
  """The list-file fixture with one train image deleted and one database image garbled."""
  root = str(tmp_path_factory.mktemp("lists"))
  want = fx.write_list_files(root, np.random.default_rng(0), c=4, leak=0)
  missing = os.path.join(root, want["train"][0][0])
  garbled = os.path.join(root, want["database"][0][3])
  os.remove(missing)
  with open(garbled, "wb") as f:
    f.write(b"not a jpeg")
  return root, missing, garbled


IMAGE_TINY = ["data.name=list_files", "data.image_size=16", "imgnet.backbone=mini_cnnf",
              "labnet.hidden_units=32", "labnet.semantic_units=8", "imgnet.semantic_units=8",
              "labnet.batch_size=4", "imgnet.batch_size=4", "eval.batch_size=32",
              "labnet.epochs_per_round=(1,)", "imgnet.epochs_per_round=(1,)",
              "checkpoint_min_seconds=0.0", "on_collapse=warn"]


@pytest.mark.slow
def test_unreadable_images_are_found_before_training_or_skipped(broken_lists, cli,
                                                                tmp_path):
  root, missing, garbled = broken_lists
  workdir = str(tmp_path / "run")
  argv = ["--config", "nuswide21", f"--config.data.kwargs.data_dir={root}", "--workdir",
          workdir, "--config.bits=8", *sets(IMAGE_TINY)]
  rc, _, err = cli(*argv)
  one_line_error(rc, err, "UnreadableImagesError", "2 image files", f"{missing} (missing)",
                 f"{garbled} (unreadable", "data.check_images=skip")
  assert trained(workdir) == []

  rc, _, err = cli(*argv, "--config.data.check_images=skip")
  assert rc == 0, err
  r = results(workdir)
  assert r["dataset"]["loader_stats"]["unreadable_images"] == {"train": 1, "query": 0,
                                                               "database": 1}
  assert (r["dataset"]["train"], r["dataset"]["database"]) == (7, 15)


# ----------------------------------------------------------------- 7: degenerate codes

def test_degenerate_codes_stop_the_run_and_warn_records_them(base, cli, tmp_path):
  # A rate of 1e6 does not do it here: with Adam every step is about ±lr whatever the
  # gradient's size, and the sign codes do not care about the scale (the codes still fit
  # LabNet's; the loss is ~1e12). A rate too small to move ImgNet leaves its random codes.
  workdir = str(tmp_path / "run")
  argv = ["--workdir", workdir, *base.args, "--config.imgnet.optimizer.lr=1e-9"]
  rc, _, err = cli(*argv, "--config.on_collapse=stop")
  one_line_error(rc, err, "CollapseError", "ImgNet's codes are degenerate",
                 f"{workdir}/bits8/checkpoints", "on_collapse='warn'")
  ckpt = os.path.join(workdir, "bits8", "checkpoints")
  assert sorted(p for p in os.listdir(ckpt) if p.isdigit()) == ["3", "4"]
  assert not os.path.exists(os.path.join(workdir, "bits8", "codes.npz"))
  before = {k: v for k, v in snapshot(workdir).items() if "checkpoints" in k}

  rc, out, err = cli(*argv, "--config.on_collapse=warn")
  assert rc == 0, err
  assert "(collapsed: on_collapse=warn)" in out
  assert results(workdir)["bits"]["8"]["collapsed"] is True
  assert {k: v for k, v in snapshot(workdir).items() if "checkpoints" in k} == before


def test_diverging_rate_stops_the_run_keeping_checkpoints(base, cli, tmp_path):
  workdir = str(tmp_path / "run")
  rc, _, err = cli("--workdir", workdir, *base.args, "--config.imgnet.optimizer.name=sgd",
                   "--config.imgnet.optimizer.lr=1e6")
  one_line_error(rc, err, "FloatingPointError", "imgnet loss became",
                 f"{workdir}/bits8/checkpoints", "lower learning rate")
  ckpt = os.path.join(workdir, "bits8", "checkpoints")
  assert [p for p in os.listdir(ckpt) if p.isdigit()]
  assert not os.path.exists(os.path.join(workdir, "bits8", "codes.npz"))


# ----------------------------------------------------------------- 8: the workdir lock

def test_second_training_in_a_workdir_names_the_first(base, cli, tmp_path):
  workdir = base.copy(tmp_path / "run")
  before = snapshot(workdir)
  holder = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('wl', sys.argv[1])\n"
            "wl = importlib.util.module_from_spec(spec); spec.loader.exec_module(wl)\n"
            "with wl.workdir_lock(sys.argv[2]):\n"
            "  print('held', flush=True)\n"
            "  sys.stdin.read()\n")
  proc = subprocess.Popen(
      [sys.executable, "-c", holder, os.path.join(ROOT, "dseh_jax", "workdir_lock.py"),
       workdir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline() == "held\n"
    rc, _, err = cli("--workdir", workdir, *base.args)
    one_line_error(rc, err, "WorkdirBusyError", f"pid {proc.pid}", "another --workdir")
    assert snapshot(workdir) == before
  finally:
    proc.stdin.close()
    proc.wait(timeout=60)
  rc, out, err = cli("--workdir", workdir, *base.args)
  assert rc == 0, err
  assert "8 bits: already done, skipping" in out
