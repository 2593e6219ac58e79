"""The experiment modules: their names, descriptions and presets.

Read from each module's source without importing it, so `supernet list`
and `supernet --help` answer at once: importing an experiment imports Keras
and its backend, which takes seconds.
"""

import ast
import dataclasses
import pkgutil
import re
from pathlib import Path

from supernet_lab import experiments as _package


@dataclasses.dataclass(frozen=True)
class Entry:
    """What `supernet list` shows of one experiment module."""

    name: str
    description: str
    reproduces: str
    presets: tuple


def _thesis_order(name):
    number = re.search(r"\d+", name)
    return (name != "quickstart", int(number.group()) if number else 1000, name)


def _discover():
    names = (m.name for m in pkgutil.iter_modules(_package.__path__) if not m.name.startswith("_"))
    return tuple(sorted(names, key=_thesis_order))


EXPERIMENTS = _discover()


def check_name(name):
    """Raises a `ValueError` naming the known experiments if `name` is not one."""
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}. Known experiments: {', '.join(EXPERIMENTS)}")


def describe(name):
    """The `Entry` of experiment `name`, read from the top-level assignments of its source.

    `DESCRIPTION` and `REPRODUCES` are string literals and `PRESETS` a dict
    literal with string keys in every experiment module; a module that
    breaks this gets a `ValueError` naming the assignment.
    """
    check_name(name)
    path = Path(_package.__path__[0]) / f"{name}.py"
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
    try:
        description = ast.literal_eval(values["DESCRIPTION"])
        reproduces = ast.literal_eval(values["REPRODUCES"])
        presets = tuple(ast.literal_eval(key) for key in values["PRESETS"].keys)
    except (KeyError, AttributeError, ValueError) as error:
        raise ValueError(
            f"Experiment {name!r} must assign DESCRIPTION and REPRODUCES as string literals and PRESETS as a "
            f"dict literal with string keys at the top of {path}. Received: {error!r}"
        ) from None
    return Entry(name, description, reproduces, presets)


def markdown_index():
    """The README's experiment table: experiment, source, presets, command, report."""
    lines = [
        "| experiment | reproduces | presets | command | report |",
        "|---|---|---|---|---|",
    ]
    for name in EXPERIMENTS:
        entry = describe(name)
        preset = "cpu" if "cpu" in entry.presets else entry.presets[0]
        lines.append(
            f"| `{name}` | {entry.reproduces} | {', '.join(entry.presets)} | "
            f"`supernet run {name} --preset {preset}` | `reports/{name}/` |"
        )
    return "\n".join(lines)
