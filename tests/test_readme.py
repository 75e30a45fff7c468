"""The README's two commands, and the docs' code examples (the train steps called from
another project, docs/api.md; adding a method, docs/methods.md) run as written."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(page: str, marker: str) -> list:
  text = open(os.path.join(ROOT, page), encoding="utf-8").read()
  return [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in b]


def test_api_train_step_example_runs(capsys):
  example = python_blocks("docs/api.md", "labnet_train_step")
  assert len(example) == 1
  assert len(example[0].strip().splitlines()) <= 25
  exec(compile(example[0], "docs/api.md", "exec"), {})  # pylint: disable=exec-used
  loss = float(capsys.readouterr().out.split()[-1])
  assert loss == loss and loss > 0.0    # finite and positive


def test_readme_gives_exactly_two_commands_and_ci_runs_the_test_one():
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
  assert len(commands) == 2
  ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
  assert commands[1].strip() in ci


@pytest.mark.slow
def test_methods_adding_a_method_example_trains(monkeypatch, tmp_path):
  """The "Adding a method" module, registered as docs/methods.md says, trains and is scored."""
  import sys
  import types

  import numpy as np

  from dseh_jax import methods
  from dseh_jax.data.registry import load_dataset
  from dseh_jax.trainer import Trainer
  from test_trainer import tiny_config

  blocks = python_blocks("docs/methods.md", "class LikelihoodOnly")
  assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 25
  module = types.ModuleType("dseh_jax.methods.my_method")
  exec(compile(blocks[0], "docs/methods.md", "exec"), module.__dict__)  # pylint: disable=exec-used
  monkeypatch.setitem(sys.modules, "dseh_jax.methods.my_method", module)
  monkeypatch.setattr(methods, "NAMES", methods.NAMES + ("my_method",))
  monkeypatch.setitem(methods.LABELS, "my_method", "MyMethod")
  config = methods.configure(tiny_config(), "my_method")
  config.imgnet.epochs_per_round = (2,)
  result = Trainer(config, load_dataset(config.data), 8, str(tmp_path), progress=False).run()
  assert [h["kind"] for h in result.history].count("epoch") == 2
  assert set(np.unique(result.query_codes)) <= {-1, 1} and 0.0 <= result.metrics["map"] <= 1.0
