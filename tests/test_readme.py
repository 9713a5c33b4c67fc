"""The README opens with the two commands, and its Python example runs as written."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", _readme(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["scripts/quickstart", "scripts/test"]


def test_python_example_runs_as_written(tmp_path):
    example = re.search(r"```python\n(.*?)```", _readme(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 20
    process = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "runs/example/serving/1/saved_model.pb").exists()
    assert (tmp_path / "runs/example/hub/encoder/saved_model.pb").exists()
    last_line = process.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\[\[\s*-?[\d.e+-]+\s+-?[\d.e+-]+\s*\]\]", last_line), last_line
