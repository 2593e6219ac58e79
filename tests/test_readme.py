"""The README's examples run (on the bundled digits data, one or two epochs)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples():
    text = README.read_text()
    section = text.split("## The API inside a plain `model.fit` workflow", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _shrunk(code, replacements):
    for old, new in replacements.items():
        assert old in code, f"README example changed: {old!r} not found; update this test"
        code = code.replace(old, new)
    return code


def test_readme_examples_run(capsys, tmp_path, monkeypatch):
    api, snapshots, _ = _examples()
    assert len(api.strip().splitlines()) <= 16
    # Same calls, smaller job: digits instead of Fashion-MNIST, one or two epochs.
    api = _shrunk(api, {
        "supernet.data.fashion_mnist()": "supernet.data.digits()",
        "PartitionedMLP(784, [200, 466, 466]": "PartitionedMLP(64, [16, 16]",
        "epochs=20": "epochs=1",
        "epochs=5": "epochs=1",
    })
    snapshots = _shrunk(snapshots, {
        "steps = 40 *": "steps = 4 *",
        "supernet.mlp(784, [200, 466, 466], 10)": "supernet.mlp(64, [16], 10)",
        "epochs=40": "epochs=4",
        "num_cycles=5": "num_cycles=2",
    })
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(api, "README.md", "exec"), namespace)
    exec(compile(snapshots, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "softmax vote" in printed and "SuperNet" in printed and "snapshot ensemble" in printed
    assert len(namespace["snapshots"].snapshots) == 2
    assert (tmp_path / "snapshots.keras").is_file()


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" not in target:
            assert (README.parent / target).exists(), target


def test_results_at_a_glance_quote_their_reports():
    section = README.read_text().split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "](" in line]
    assert rows, "no result rows found"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        source, ours, seeds, verdict = cells[1:5]
        link = re.search(r"\]\(([^)]+)\)", cells[-1]).group(1)
        report = (README.parent / link).read_text()
        for number in re.findall(r"\d+\.\d+", f"{source} {ours}"):
            assert number in report, f"{number} (README) is not in {link}"
        # The seeds and verdict must be those of the report row that gives our numbers.
        ours_numbers = re.findall(r"\d+\.\d+", ours)
        matching = [line for line in report.splitlines() if line.startswith("|") and all(n in line for n in ours_numbers)]
        assert any(f"| {seeds} | {verdict} |" in line for line in matching), (
            f"{ours}: {seeds} seeds / {verdict} (README) are not on its row in {link}"
        )
