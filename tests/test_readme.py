"""The README's example of calling the train steps from another project runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_train_step_example_runs(capsys):
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  example = [b for b in blocks if "labnet_train_step" in b]
  assert len(example) == 1
  assert len(example[0].strip().splitlines()) <= 25
  exec(compile(example[0], "README.md", "exec"), {})  # pylint: disable=exec-used
  loss = float(capsys.readouterr().out.split()[-1])
  assert loss == loss and loss > 0.0    # finite and positive


def test_readme_gives_exactly_two_commands_and_ci_runs_the_test_one():
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
  assert len(commands) == 2
  ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
  assert commands[1].strip() in ci
