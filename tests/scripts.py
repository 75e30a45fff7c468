"""Test helpers for the scripts of ``experiments/``: loading one as a module, and the tiny
digits settings of the command-line runs."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
  """``experiments/<name>.py`` as a fresh module named ``<name>_script``."""
  spec = importlib.util.spec_from_file_location(
      f"{name}_script", os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_digits_overrides(labnet_epochs: str = "(3,2)", imgnet_epochs: str = "(3,2)"
                          ) -> list[str]:
  """``--set`` items of a tiny digits run (64 training points, 8 bits in seconds); every
  epoch is checkpointed so that kill tests find their checkpoints."""
  return [
      "data.kwargs.num_query=40", "data.kwargs.num_train=64", "data.kwargs.num_retrieval=80",
      "labnet.hidden_units=64", "labnet.semantic_units=16", "imgnet.semantic_units=16",
      "labnet.batch_size=16", "imgnet.batch_size=16", "eval.batch_size=32",
      f"labnet.epochs_per_round={labnet_epochs}", f"imgnet.epochs_per_round={imgnet_epochs}",
      "eval.top_k=20", "on_collapse=warn", "checkpoint_min_seconds=0.0"]
