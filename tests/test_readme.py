"""The README's API example runs (on the bundled digits data, one epoch)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example():
    text = README.read_text()
    section = text.split("## The API inside a plain `model.fit` workflow", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_runs(capsys):
    code = _api_example()
    assert len(code.strip().splitlines()) <= 16
    # Same calls, smaller job: digits instead of Fashion-MNIST, one epoch each.
    replacements = {
        "supernet.data.fashion_mnist()": "supernet.data.digits()",
        "PartitionedMLP(784, [200, 466, 466]": "PartitionedMLP(64, [16, 16]",
        "epochs=20": "epochs=1",
        "epochs=5": "epochs=1",
    }
    small = code
    for old, new in replacements.items():
        assert old in code, f"README example changed: {old!r} not found; update this test"
        small = small.replace(old, new)
    exec(compile(small, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "softmax vote" in printed and "SuperNet" in printed
