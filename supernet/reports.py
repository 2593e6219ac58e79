"""Results store, aggregation, Markdown/LaTeX tables and figures.

Every experiment run becomes one JSON line (see `make_record` and
`ResultsStore`); tables and figures are rendered from those lines, with the
thesis's numbers beside ours and a footnote for every deviation from the
thesis's setup.

Reference:
    Bukowski & Dzwinel, "SuperNet -- an efficient method of neural networks
    ensembling", 2020 (thesis Tables 1-9, Figs. 2-3, 7, 11-17, 20-21).
"""

import contextlib
import contextvars
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: appends stay atomic, the newline check racy.
    fcntl = None

__all__ = [
    "StageTimer",
    "run_metadata",
    "make_record",
    "ResultsStore",
    "get_path",
    "aggregate",
    "latest_runs",
    "format_mean_std",
    "Table",
    "to_markdown",
    "to_latex",
    "write_table",
    "write_text_atomic",
    "plot_curves",
    "plot_agreement_matrix",
    "plot_loss_histogram",
    "plot_histogram_counts",
    "plot_embedding",
]

_MISSING = "—"
_DPI = 120


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


class StageTimer:
    """Wall and CPU seconds per named stage of a run.

    Wall time is `time.perf_counter`, CPU time is `time.process_time`, which
    counts every thread of the process: with multi-threaded BLAS or a
    backend's thread pool `cpu_s` can exceed `wall_s`.

    Entering the same stage name again adds to its totals. Stages may be
    nested; `total` sums only the outermost stages so nested time is not
    counted twice. A stage cannot be re-entered while it is still open.

    Example:

    >>> timer = StageTimer()
    >>> with timer.stage("train"):
    ...     _ = sum(range(1000))
    >>> sorted(timer.as_dict()["train"])
    ['cpu_s', 'wall_s']
    """

    def __init__(self):
        self._stages = {}
        self._open = set()
        self._total = {"wall_s": 0.0, "cpu_s": 0.0}

    @contextlib.contextmanager
    def stage(self, name):
        """Time the body of a `with` block under `name`.

        Args:
            name: str, the stage name, e.g. `"train"` or `"evaluate"`.

        Returns:
            A context manager.
        """
        name = str(name)
        if name in self._open:
            raise ValueError(
                f"Stage `{name}` is already running; nested re-entry of the "
                f"same stage would count its time twice. Received: name={name!r}"
            )
        outermost = not self._open
        self._open.add(name)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            self._open.discard(name)
            entry = self._stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += wall
            entry["cpu_s"] += cpu
            if outermost:
                self._total["wall_s"] += wall
                self._total["cpu_s"] += cpu

    def credit(self, wall_s, cpu_s, stages=None):
        """Add time spent earlier (e.g. in a killed run whose result is reused).

        The seconds count towards every stage open now and towards `total`;
        `stages` (`{name: {"wall_s", "cpu_s"}}`) are closed stages that ran
        inside that time and are added under their names.

        Args:
            wall_s, cpu_s: float seconds >= 0.
            stages: optional dict as returned by `as_dict`.
        """
        if not (wall_s >= 0 and cpu_s >= 0):
            raise ValueError(f"Arguments `wall_s` and `cpu_s` must be >= 0. Received: wall_s={wall_s}, cpu_s={cpu_s}")
        for name in list(self._open):
            entry = self._stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += wall_s
            entry["cpu_s"] += cpu_s
        for name, times in (stages or {}).items():
            entry = self._stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += times["wall_s"]
            entry["cpu_s"] += times["cpu_s"]
        self._total["wall_s"] += wall_s
        self._total["cpu_s"] += cpu_s

    def as_dict(self):
        """Returns `{name: {"wall_s": float, "cpu_s": float}}` in first-entered order."""
        return {name: dict(entry) for name, entry in self._stages.items()}

    @property
    def open_stages(self):
        """Names of the stages running now."""
        return set(self._open)

    @property
    def total(self):
        """`{"wall_s": float, "cpu_s": float}` summed over outermost stages."""
        return dict(self._total)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def _git(args, cwd):
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip()


def _dist_version(*names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


_THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")


@functools.lru_cache(maxsize=None)
def _static_metadata():
    # Versions, backend and host cannot change within a process; importing
    # keras (and with it the backend) is slow, so do it once.
    try:
        import keras

        backend = keras.backend.backend()
        keras_version = keras.__version__
    except Exception:  # keras missing or its backend failing to import
        backend = os.environ.get("KERAS_BACKEND", "unknown")
        keras_version = _dist_version("keras")
    versions = {
        "python": platform.python_version(),
        "keras": keras_version,
        "tensorflow": _dist_version("tensorflow", "tensorflow-cpu"),
        "jax": _dist_version("jax"),
        "numpy": np.__version__,
        "sklearn": _dist_version("scikit-learn"),
    }
    return {
        "backend": backend,
        "versions": {k: v for k, v in versions.items() if v is not None},
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        # Thread caps change timings (a 1-thread run is slower per process
        # but two of them share 2 cores better), so they go with the record.
        "thread_env": {key: os.environ[key] for key in _THREAD_VARIABLES if key in os.environ},
        "platform": platform.platform(),
    }


def run_metadata():
    """Where and with what a run was executed.

    The git state is that of the repository containing this file, so it is
    right whatever the working directory. `git_dirty` reports uncommitted
    changes to *tracked* files (untracked files such as fresh results are
    ignored). Start and finish times are the caller's to add (e.g. through
    `make_record(extra=...)`).

    Returns:
        A dict with `git_commit` (hex sha or `"unknown"` outside a git
        checkout or before the first commit), `git_dirty` (bool, or None
        when unknown), `backend` (`keras.backend.backend()`), `versions`
        (python, keras, tensorflow and jax when installed, numpy, sklearn),
        `hostname`, `cpu_count`, `platform` and `thread_env` (the
        thread-count environment variables that were set).

    Example:

    >>> meta = run_metadata()
    >>> "git_commit" in meta and "backend" in meta
    True
    """
    package_dir = Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], package_dir)
    if commit:
        status = _git(["status", "--porcelain", "--untracked-files=no"], package_dir)
        dirty = None if status is None else bool(status)
    else:
        commit, dirty = "unknown", None
    meta = {"git_commit": commit, "git_dirty": dirty}
    static = _static_metadata()
    meta.update(static)
    meta["versions"] = dict(static["versions"])
    return meta


def _to_jsonable(value, path="record"):
    """Plain-Python copy of `value`: numpy -> python, NaN/inf -> None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist(), path)
    if isinstance(value, np.generic):
        return _to_jsonable(value.item(), path)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value), path)
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"Value at `{path}` is not JSON-serialisable. Convert it to a number, "
        f"string, list or dict first. Received: type={type(value).__name__}"
    )


_RECORD_KEYS = (
    "experiment",
    "preset",
    "seed",
    "config",
    "metrics",
    "timings",
    "status",
    "time_utc",
)


def make_record(
    *,
    experiment,
    preset,
    config,
    seed,
    metrics,
    timings,
    status="ok",
    extra=None,
):
    """One run as a JSON-serialisable dict.

    numpy scalars and arrays become Python numbers and lists, tuples become
    lists, dataclasses (e.g. a frozen experiment `Config`) become dicts, and
    NaN/inf become None (JSON has no NaN). Anything else that is not a
    number, string, list or dict raises `TypeError`.

    Args:
        experiment: str, the experiment module, e.g. `"table6_last_layer_init"`.
        preset: str, e.g. `"smoke"`, `"cpu"` or `"paper"`.
        config: dict (or dataclass) with every knob of the run.
        seed: int, the run's seed.
        metrics: dict of results; may be nested, e.g.
            `{"ensemble": {"accuracy": 0.91}}`.
        timings: dict, e.g. `StageTimer().as_dict()`.
        status: `"ok"` or a short failure description; `aggregate` only
            uses records whose status is `"ok"`.
        extra: optional dict merged at the top level (e.g. `started_utc`,
            `finished_utc`). It may not override the record's own keys.

    Returns:
        `{"experiment", "preset", "seed", "config", "metrics", "timings",
        "status", "time_utc", **run_metadata(), **extra}`.

    Example:

    >>> rec = make_record(experiment="demo", preset="smoke", config={"lr": 0.1},
    ...                   seed=0, metrics={"acc": float("nan")}, timings={})
    >>> rec["metrics"]
    {'acc': None}
    """
    record = {
        "experiment": str(experiment),
        "preset": str(preset),
        "seed": _to_jsonable(seed, "seed"),
        "config": _to_jsonable(config, "config"),
        "metrics": _to_jsonable(metrics, "metrics"),
        "timings": _to_jsonable(timings, "timings"),
        "status": str(status),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }
    record.update(_to_jsonable(run_metadata(), "metadata"))
    if extra:
        clash = sorted(set(extra) & set(record))
        if clash:
            raise ValueError(
                f"Argument `extra` may not override record keys. Received "
                f"clashing keys: {clash}"
            )
        record.update(_to_jsonable(dict(extra), "extra"))
    return record


# ---------------------------------------------------------------------------
# Results store
# ---------------------------------------------------------------------------


class ResultsStore:
    """An append-only JSON-lines file of run records.

    Each `append` replaces the file atomically (temporary file, `fsync`,
    `os.replace`) while holding an advisory `flock` on a sidecar lock file,
    so concurrent appends from several processes never interleave or lose a
    line, and a process killed mid-append leaves the old file or the new
    one, never a half-written line. `read` still skips (with a warning) a
    line that does not parse, e.g. one left by another program.

    Args:
        path: str or Path of the `.jsonl` file. Parent directories are
            created on the first append.

    Example:

    >>> import tempfile, os
    >>> store = ResultsStore(os.path.join(tempfile.mkdtemp(), "r", "runs.jsonl"))
    >>> store.append({"experiment": "demo", "metrics": {"acc": 0.5}})
    >>> store.read()[0]["metrics"]["acc"]
    0.5
    """

    def __init__(self, path):
        self.path = Path(path)

    def append(self, record):
        """Append one record as a single JSON line, atomically.

        Under an exclusive `flock` on the sidecar file `<name>.lock`, the
        current content plus the new line is written to a temporary file,
        flushed to disk and `os.replace`d over the store. A reader (or a
        writer killed at any moment) therefore sees the file either without
        or with the complete new line, never part of it. Rewriting costs
        O(file size) per append, a few milliseconds for result files.

        Args:
            record: a JSON-serialisable dict, typically from `make_record`.
                numpy values and NaN are converted as in `make_record`.
        """
        if not isinstance(record, dict):
            raise TypeError(
                f"Argument `record` must be a dict. Received: "
                f"type={type(record).__name__}"
            )
        line = json.dumps(
            _to_jsonable(record), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The lock lives on a file that is never replaced: a lock on the
        # store itself would be lost with the inode at each `os.replace`.
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                content = self.path.read_bytes()
            except FileNotFoundError:
                content = b""
            if content and not content.endswith(b"\n"):
                # Damage from a foreign writer: keep it a separate (skipped) line.
                content += b"\n"
            _write_atomic(self.path, content + line + b"\n")
        finally:
            os.close(lock)  # also releases the lock

    def read(self):
        """All complete records, in file order.

        Blank lines are ignored. A line that is not a JSON object is skipped
        with a warning, as is a truncated last line (one without its
        newline that does not parse; a last line that parses is kept).

        Returns:
            list of dicts; `[]` when the file does not exist.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records = []
        lines = raw.split(b"\n")
        last = len(lines) - 1
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict):
                what = "truncated last line" if number - 1 == last else "bad line"
                warnings.warn(
                    f"{self.path}:{number}: skipping {what} ({len(line)} bytes) "
                    "that is not a complete JSON object.",
                    stacklevel=2,
                )
                continue
            records.append(record)
        return records

    def __iter__(self):
        return iter(self.read())

    def __len__(self):
        return len(self.read())

    def __repr__(self):
        return f"ResultsStore({str(self.path)!r})"


def _ends_with_newline(path, size):
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


# ---------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------


def _get_path(record, dotted):
    value = record
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return None
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def get_path(record, dotted):
    """Value at a dotted path of nested dicts and lists, or None where a part is missing.

    Args:
        record: nested dicts and lists, e.g. one results record.
        dotted: keys joined by dots, e.g. `"metrics.rows.supernet.test_accuracy"`;
            a part made of digits indexes a list (`"member_accuracy.0"`).

    Returns:
        The value found, or None if a key or index is missing or a scalar
        is reached before the path ends.

    Example:

    >>> get_path({"metrics": {"accuracy": 0.9}}, "metrics.accuracy")
    0.9
    >>> get_path({"members": [0.7, 0.8]}, "members.1")
    0.8
    """
    return _get_path(record, dotted)


def latest_runs(records):
    """The last record of every (experiment, preset, seed, config, backend).

    Re-running a seed (after a crash, or by mistake) replaces its earlier
    record in tables instead of counting the seed twice; the store itself
    keeps every line. A run on another Keras backend is another run.

    Example:

    >>> runs = [{"experiment": "e", "preset": "cpu", "seed": 0, "config": {}, "metrics": {"a": a}}
    ...         for a in (1, 2)]
    >>> [r["metrics"]["a"] for r in latest_runs(runs)]
    [2]
    """
    latest = {}
    for record in records:
        key = json.dumps(
            [record.get("experiment"), record.get("preset"), record.get("seed"), record.get("config"), record.get("backend")],
            sort_keys=True,
            default=str,
        )
        latest.pop(key, None)  # keep first-seen order of the surviving runs
        latest[key] = record
    return list(latest.values())


def aggregate(records, *, by, metrics):
    """Mean, standard deviation and count of metrics per group of runs.

    Keys and metrics are dotted paths into the nested record, e.g.
    `"preset"`, `"config.num_members"` or `"metrics.ensemble.accuracy"`;
    a missing key groups as None. Only records with `status == "ok"` are
    used (a record without `status` counts as ok); the others are counted
    in the group's `"failed"` field (a group with only failed runs is
    still listed, with `n == 0`).

    The standard deviation is the sample one (`ddof=1`), as usually
    reported over seeds in papers; it is None when fewer than two values
    exist. Missing or None (NaN) metric values are left out of `values`
    and counted in `"missing"`.

    Args:
        records: iterable of record dicts (e.g. `ResultsStore(...).read()`).
        by: sequence of dotted keys to group by.
        metrics: sequence of dotted metric paths.

    Returns:
        A list of groups in first-seen order, each
        `{"group": {key: value}, "n_runs": int, "failed": int,
        "metrics": {metric: {"mean", "std", "n", "values", "missing"}}}`.

    Example:

    >>> recs = [{"status": "ok", "preset": "cpu", "metrics": {"acc": a}}
    ...         for a in (0.8, 0.9, 1.0)]
    >>> g = aggregate(recs, by=["preset"], metrics=["metrics.acc"])[0]
    >>> round(g["metrics"]["metrics.acc"]["mean"], 6), g["metrics"]["metrics.acc"]["n"]
    (0.9, 3)
    """
    if isinstance(by, str) or isinstance(metrics, str):
        raise TypeError(
            "Arguments `by` and `metrics` must be sequences of dotted paths, "
            f"not strings. Received: by={by!r}, metrics={metrics!r}"
        )
    by, metrics = list(by), list(metrics)
    groups = {}
    for record in records:
        key_values = [_get_path(record, key) for key in by]
        hash_key = json.dumps(key_values, sort_keys=True, default=str)
        group = groups.get(hash_key)
        if group is None:
            group = groups[hash_key] = {
                "group": dict(zip(by, key_values)),
                "n_runs": 0,
                "failed": 0,
                "_values": {m: [] for m in metrics},
                "_missing": {m: 0 for m in metrics},
            }
        if record.get("status", "ok") != "ok":
            group["failed"] += 1
            continue
        group["n_runs"] += 1
        for metric in metrics:
            value = _get_path(record, metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                value = None
            if value is None or not math.isfinite(value):
                group["_missing"][metric] += 1
            else:
                group["_values"][metric].append(float(value))

    result = []
    for group in groups.values():
        stats = {}
        for metric in metrics:
            values = group["_values"][metric]
            n = len(values)
            stats[metric] = {
                "mean": float(np.mean(values)) if n else None,
                "std": float(np.std(values, ddof=1)) if n > 1 else None,
                "n": n,
                "values": values,
                "missing": group["_missing"][metric],
            }
        result.append(
            {
                "group": group["group"],
                "n_runs": group["n_runs"],
                "failed": group["failed"],
                "metrics": stats,
            }
        )
    return result


def _is_missing(x):
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def format_mean_std(mean, std=None, n=1, *, scale=1.0, digits=2):
    """Format a mean over runs as `"91.36 ± 0.12"`.

    Args:
        mean: number, or None/NaN for a missing value.
        std: number or None; shown only when `n > 1` and it is finite.
        n: number of runs behind the mean.
        scale: multiplies mean and std, e.g. `100` for accuracy in percent.
        digits: decimals to print.

    Returns:
        str; `"—"` when the mean is missing.

    Example:

    >>> format_mean_std(0.91364, 0.0012, 3, scale=100)
    '91.36 ± 0.12'
    >>> format_mean_std(0.5, 0.1, 1, scale=100)
    '50.00'
    """
    if _is_missing(mean):
        return _MISSING
    text = f"{float(mean) * scale:.{digits}f}"
    if n is not None and n > 1 and not _is_missing(std):
        text += f" ± {float(std) * scale:.{digits}f}"
    return text


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    """A result table, rendered to Markdown and LaTeX.

    Args:
        title: e.g. `"Table 6: Last layer initializations of the NN ensemble"`.
        columns: column headers.
        rows: list of rows; cells are strings (preferably formatted with
            `format_mean_std`) or numbers (printed with 4 significant
            digits; None/NaN as `"—"`).
        caption: what the numbers are, the preset, the seeds.
        footnotes: one per deviation from the thesis setup, rendered as
            `[1]`, `[2]`, ... in order; refer to them from cells with the
            same marker (see `footnote`).
        source: where the thesis numbers come from, e.g. `"thesis Table 6"`.

    Example:

    >>> t = Table("Table 1: demo", ["Model", "Acc."], [])
    >>> t.rows.append(["SuperNet " + t.footnote("3 seeds, not 10"), "91.2"])
    >>> t.rows[0][0], t.footnotes
    ('SuperNet [1]', ['3 seeds, not 10'])
    """

    title: str
    columns: list
    rows: list
    caption: str = ""
    footnotes: list = dataclasses.field(default_factory=list)
    source: str = ""

    def footnote(self, text):
        """Adds a footnote (once per distinct text) and returns its marker.

        Args:
            text: str, the deviation from the thesis setup.

        Returns:
            The marker, e.g. `"[2]"`, to put into a cell.
        """
        if text not in self.footnotes:
            self.footnotes.append(text)
        return f"[{self.footnotes.index(text) + 1}]"


def _cell_text(cell):
    if isinstance(cell, str):
        return cell
    if cell is None:
        return _MISSING
    if isinstance(cell, (bool, np.bool_)):
        return str(bool(cell))
    if isinstance(cell, (int, np.integer)):
        return str(int(cell))
    if isinstance(cell, (float, np.floating)):
        return _MISSING if _is_missing(cell) else f"{float(cell):.4g}"
    return str(cell)


def _check_table(table):
    width = len(table.columns)
    for i, row in enumerate(table.rows):
        if len(row) != width:
            raise ValueError(
                f"Row {i} of table {table.title!r} has {len(row)} cells but "
                f"there are {width} columns. Received: row={row!r}"
            )


def _md_escape(text):
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def to_markdown(table):
    """Render a `Table` as GitHub-flavoured Markdown.

    Layout: `### title`, the caption (plus `Thesis numbers: <source>.`),
    a pipe table, and the footnotes as a numbered list. `|` in cells is
    escaped.

    Args:
        table: a `Table`.

    Returns:
        str ending with a newline.

    Example:

    >>> print(to_markdown(Table("T", ["a", "b"], [["x|y", 1.5]])), end="")
    ### T
    <BLANKLINE>
    | a | b |
    | --- | --- |
    | x\\|y | 1.5 |
    """
    _check_table(table)
    parts = [f"### {_md_escape(table.title)}"]
    intro = [s for s in (table.caption.strip(), _source_text(table)) if s]
    if intro:
        parts.append(" ".join(intro))
    lines = [
        "| " + " | ".join(_md_escape(c) for c in table.columns) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
    ]
    for row in table.rows:
        lines.append(
            "| " + " | ".join(_md_escape(_cell_text(c)) for c in row) + " |"
        )
    parts.append("\n".join(lines))
    if table.footnotes:
        parts.append(
            "\n".join(
                f"{i}. {_md_escape(note)}"
                for i, note in enumerate(table.footnotes, start=1)
            )
        )
    return "\n\n".join(parts) + "\n"


def _source_text(table):
    source = table.source.strip()
    parts = [f"Thesis numbers: {source}." if source else "", _TABLE_NOTE.get()]
    return " ".join(p for p in parts if p)


_TABLE_NOTE = contextvars.ContextVar("table_note", default="")


@contextlib.contextmanager
def table_note(text):
    """Within the block, every table rendered states `text` after its caption.

    For what holds for every table a piece of code renders without being
    one of its cells, e.g. the Keras backend that produced the numbers.

    Example:

    >>> with table_note("Keras backend: jax."):
    ...     print(to_markdown(Table("T", ["a"], [[1]], caption="Demo.")).splitlines()[2])
    Demo. Keras backend: jax.
    """
    token = _TABLE_NOTE.set(str(text).strip())
    try:
        yield
    finally:
        _TABLE_NOTE.reset(token)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "—": "---",
    "–": "--",
    "×": r"$\times$",
    "≈": r"$\approx$",
}


def _latex_escape(text):
    text = " ".join(str(text).splitlines())
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table, *, label=None):
    """Render a `Table` as a booktabs `table` environment.

    The caption is the title followed by the caption text and source; the
    first column is left-aligned, the others right-aligned; footnotes follow
    the tabular as `\\footnotesize` lines `[1] ...`. LaTeX specials
    (`\\ & % $ # _ { } ~ ^`) are escaped and `±` becomes `$\\pm$`.
    Needs `\\usepackage{booktabs}`.

    Args:
        table: a `Table`.
        label: optional `\\label{...}` key, e.g. `"tab:last_layer_init"`.

    Returns:
        str ending with a newline.

    Example:

    >>> print(to_latex(Table("T", ["a"], [["50%"]])), end="")
    \\begin{table}[ht]
    \\centering
    \\caption{T}
    \\begin{tabular}{l}
    \\toprule
    a \\\\
    \\midrule
    50\\% \\\\
    \\bottomrule
    \\end{tabular}
    \\end{table}
    """
    _check_table(table)
    caption = " ".join(
        s
        for s in (table.title.strip(), table.caption.strip(), _source_text(table))
        if s
    )
    align = "l" + "r" * (len(table.columns) - 1)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{" + _latex_escape(caption) + "}",
    ]
    if label:
        lines.append(r"\label{" + str(label) + "}")
    lines += [
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        lines.append(
            " & ".join(_latex_escape(_cell_text(c)) for c in row) + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines.append(r"\par\smallskip")
        for i, note in enumerate(table.footnotes, start=1):
            lines.append(
                r"{\footnotesize " + f"[{i}] " + _latex_escape(note) + r"}\\"
            )
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _write_atomic(path, data):
    """Write bytes so that readers see the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path, text):
    """Write `text` to `path` so that readers see the old or the new file, never a part.

    The text goes to a temporary file in the same folder, is flushed to disk,
    and replaces `path` with `os.replace` (atomic on POSIX and Windows).

    Returns:
        `Path(path)`.
    """
    return _write_atomic(path, text.encode("utf-8"))


def write_table(table, path_stem):
    """Write `path_stem.md` and `path_stem.tex`.

    Args:
        table: a `Table`.
        path_stem: str or Path without suffix, e.g.
            `"reports/tables/table6_last_layer_init"`. Parent directories
            are created. The LaTeX label is `tab:<stem name>`.

    Returns:
        `[Path(md), Path(tex)]`.

    Example:

    >>> import tempfile, os
    >>> paths = write_table(Table("T", ["a"], [[1]]),
    ...                     os.path.join(tempfile.mkdtemp(), "t"))
    >>> [p.suffix for p in paths]
    ['.md', '.tex']
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md = stem.with_name(stem.name + ".md")
    tex = stem.with_name(stem.name + ".tex")
    write_text_atomic(md, to_markdown(table))
    write_text_atomic(tex, to_latex(table, label=f"tab:{stem.name}"))
    return [md, tex]


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        fig.tight_layout()
        fig.savefig(tmp, dpi=_DPI)
        os.replace(tmp, path)  # a killed run never leaves half a figure
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path


def plot_curves(
    histories, metric, path, *, title="", xlabel="epoch", markers=None, x=None
):
    """Line plot of one metric per run against the epoch (1-based) or given x values.

    Reference: thesis Figs. 7, 11, 16 and 17 (accuracy of members and
    ensembles during training).

    Args:
        histories: `{run_label: {metric_name: [value per epoch]}}`, e.g.
            `{"member 1": history.history, ...}`.
        metric: the metric name to plot, e.g. `"val_accuracy"`.
        path: where to write the PNG.
        title: figure title.
        xlabel: x-axis label.
        markers: optional `{label: (x, y)}` drawn as dots, e.g. the
            SuperNet's final accuracy.
        x: optional `{run_label: [x value per epoch]}`, e.g. cumulative CPU
            seconds (thesis Figs. 1 and 4 plot against training time); runs
            not in it are plotted against the epoch.

    Returns:
        The `Path` written.

    Example:

    >>> import tempfile, os
    >>> p = plot_curves({"a": {"acc": [0.5, 0.7]}}, "acc",
    ...                 os.path.join(tempfile.mkdtemp(), "c.png"))
    >>> p.exists()
    True
    """
    usable = {run: h[metric] for run, h in histories.items() if metric in h}
    if not usable:
        raise ValueError(
            f"No history contains metric `{metric}`. Received: "
            f"metric={metric!r}, runs={list(histories)}"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = x or {}
    for run, values in usable.items():
        values = np.asarray(values, dtype=float)
        xs = np.asarray(x[run], dtype=float) if run in x else np.arange(1, len(values) + 1)
        if xs.shape != values.shape:
            raise ValueError(
                f"Run {run!r} has {len(values)} values of `{metric}` but {len(xs)} x values."
            )
        ax.plot(xs, values, label=str(run))
    for label, (marker_x, marker_y) in (markers or {}).items():
        ax.plot([marker_x], [marker_y], "o", markersize=7, label=str(label), zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    n_entries = len(usable) + len(markers or {})
    if n_entries <= 20:
        ax.legend(fontsize="small", ncol=1 if n_entries <= 10 else 2)
    return _save(fig, path)


def plot_agreement_matrix(matrix, labels, path, *, title=""):
    """Annotated heatmap of pairwise "same classification %" values.

    Reference: thesis Figs. 20 and 21.

    Args:
        matrix: square array-like, `matrix[i, j]` = percentage of test
            samples that models `i` and `j` classify the same way. Values
            are annotated as given (pass percentages, not fractions).
        labels: one name per row/column.
        path: where to write the PNG.
        title: figure title.

    Returns:
        The `Path` written.

    Example:

    >>> import tempfile, os
    >>> p = plot_agreement_matrix([[100, 90], [90, 100]], ["a", "b"],
    ...                           os.path.join(tempfile.mkdtemp(), "m.png"))
    >>> p.suffix
    '.png'
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"Argument `matrix` must be square. Received: shape={matrix.shape}"
        )
    if len(labels) != matrix.shape[0]:
        raise ValueError(
            f"Argument `labels` must have one name per row. Received: "
            f"len(labels)={len(labels)}, matrix.shape={matrix.shape}"
        )
    plt = _pyplot()
    size = max(4.0, 0.6 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    finite = matrix[np.isfinite(matrix)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([str(l) for l in labels], rotation=45, ha="right")
    ax.set_yticklabels([str(l) for l in labels])
    middle = (vmin + vmax) / 2
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            ax.text(
                j,
                i,
                _MISSING if not np.isfinite(value) else f"{value:.1f}",
                ha="center",
                va="center",
                fontsize="small",
                color="black" if value > middle else "white",
            )
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_loss_histogram(per_sample_losses, path, *, title="", bins=50):
    """Histograms of per-sample cross-entropy on log-log axes.

    Cross-entropy spans roughly 1e-8 (confidently right) to 20 (confidently
    wrong), so losses are clipped at 1e-8 and binned on a log scale; the
    count axis is log-scaled too.

    Reference: thesis Figs. 12 and 13.

    Args:
        per_sample_losses: `{label: array of per-sample losses}`.
        path: where to write the PNG.
        title: figure title.
        bins: number of log-spaced bins shared by all histograms.

    Returns:
        The `Path` written.

    Example:

    >>> import tempfile, os
    >>> p = plot_loss_histogram({"a": np.array([1e-3, 0.1, 2.0])},
    ...                         os.path.join(tempfile.mkdtemp(), "h.png"))
    >>> p.exists()
    True
    """
    floor = 1e-8
    losses = {
        str(k): np.clip(np.asarray(v, dtype=float).ravel(), floor, None)
        for k, v in per_sample_losses.items()
    }
    losses = {k: v[np.isfinite(v)] for k, v in losses.items()}
    if not losses or not any(v.size for v in losses.values()):
        raise ValueError(
            "Argument `per_sample_losses` must contain at least one finite "
            f"loss. Received keys: {list(per_sample_losses)}"
        )
    top = max(float(v.max()) for v in losses.values() if v.size)
    edges = np.logspace(np.log10(floor), np.log10(max(top, floor * 10)) + 1e-9, bins + 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, values in losses.items():
        ax.hist(values, bins=edges, histtype="step", linewidth=1.5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-sample cross-entropy")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_histogram_counts(counts, edges, path, *, title="", xlabel="value", log_counts=False, marker=None):
    """Step histograms from stored counts over shared bin edges.

    For quantities that can be negative (e.g. logit margins,
    `supernet.metrics.logit_margin`), stored in results as counts so the
    figure is redrawn without the raw samples.

    Args:
        counts: `{label: counts per bin}`, each of length `len(edges) - 1`.
        edges: increasing bin edges shared by all histograms.
        path: where to write the PNG.
        title: figure title.
        xlabel: x-axis label.
        log_counts: log-scale the count axis.
        marker: optional x value drawn as a dashed vertical line (e.g. 0).

    Returns:
        The `Path` written.

    Example:

    >>> import tempfile, os
    >>> p = plot_histogram_counts({"a": [1, 3]}, [-1.0, 0.0, 1.0],
    ...                           os.path.join(tempfile.mkdtemp(), "h.png"))
    >>> p.exists()
    True
    """
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"Argument `edges` must be increasing, at least 2 values. Received: edges={edges.tolist()}")
    for label, values in counts.items():
        if len(values) != len(edges) - 1:
            raise ValueError(
                f"Argument `counts` must have len(edges) - 1 = {len(edges) - 1} counts per label. "
                f"Received: {len(values)} counts for {label!r}"
            )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, values in counts.items():
        ax.stairs(np.asarray(values, dtype=float), edges, linewidth=1.5, label=str(label))
    if marker is not None:
        ax.axvline(marker, color="grey", linestyle="--", linewidth=1)
    if log_counts:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _subsample(labels, max_points, seed):
    """Indices of a seeded, class-stratified subsample of at most max_points."""
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation keeps class proportions and the total exact.
    quota = counts * (max_points / n)
    take = np.floor(quota).astype(int)
    shortfall = max_points - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:shortfall]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=t, replace=False)
        for c, t in zip(classes, take)
    ]
    return np.sort(np.concatenate(chosen))


def plot_embedding(
    activations,
    labels,
    path,
    *,
    title="",
    seed=0,
    k=5,
    max_points=3000,
    num_threads=1,
):
    """t-SNE map of activations coloured by class, with its k-NN accuracy.

    Runs `sklearn.manifold.TSNE(n_components=2, init="pca",
    random_state=seed)` on a seeded, class-stratified subsample of at most
    `max_points` rows, then scores the 2-D map with leave-one-out k-NN
    accuracy (`supernet.metrics.knn_accuracy`), which the thesis uses to
    compare how well separated the classes are.

    Reference: thesis Figs. 2, 3, 14 and 15.

    Args:
        activations: array `(n, ...)`; flattened to `(n, features)`.
        labels: int class ids `(n,)` or one-hot `(n, classes)`.
        path: where to write the PNG.
        title: figure title; the k-NN accuracy is appended.
        seed: seed for the subsample and t-SNE.
        k: neighbours for the k-NN accuracy.
        max_points: subsample size (t-SNE is quadratic-ish in n).
        num_threads: OpenMP threads for t-SNE. 1 by default: sklearn's
            Barnes-Hut t-SNE was measured 10-30x slower when its threads
            compete for cores with other processes (parallel runs, a
            backend's thread pool). None uses sklearn's default.

    Returns:
        float, the k-NN accuracy of the 2-D embedding.

    Example:

    >>> import tempfile, os
    >>> x = np.concatenate([np.zeros((40, 5)), np.ones((40, 5)) * 9])
    >>> x += np.random.default_rng(0).normal(size=x.shape)
    >>> acc = plot_embedding(x, np.repeat([0, 1], 40),
    ...                      os.path.join(tempfile.mkdtemp(), "e.png"))
    >>> acc > 0.9
    True
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from supernet import metrics

    activations = np.asarray(activations, dtype=np.float32)
    activations = activations.reshape(len(activations), -1)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    labels = labels.ravel()
    if len(labels) != len(activations):
        raise ValueError(
            f"Arguments `activations` and `labels` must have the same length. "
            f"Received: {len(activations)} and {len(labels)}"
        )
    if len(labels) < 3:
        raise ValueError(
            f"t-SNE needs at least 3 points. Received: n={len(labels)}"
        )
    index = _subsample(labels, max_points, seed)
    x, y = activations[index], labels[index]
    # sklearn requires perplexity < n_samples.
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(
        n_components=2, init="pca", random_state=seed, perplexity=perplexity
    )
    with threadpool_limits(limits=num_threads):
        embedding = tsne.fit_transform(x)
    accuracy = float(metrics.knn_accuracy(embedding, y, k=k))

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 6.0))
    classes = np.unique(y)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        mask = y == c
        ax.scatter(
            embedding[mask, 0],
            embedding[mask, 1],
            s=4,
            color=cmap(i % cmap.N),
            label=str(c),
        )
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize="small", loc="best", title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    suffix = f"{k}-NN accuracy {accuracy:.3f}"
    ax.set_title(f"{title} ({suffix})" if title else suffix)
    _save(fig, path)
    return accuracy
