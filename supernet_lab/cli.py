"""The `supernet` command: parses arguments and dispatches, nothing more.

`--help` and `list` never import Keras. Commands that train import it once,
with TensorFlow's C++ start-up lines (oneDNN and CUDA notices, written before
its log level applies) kept out of the output; any other line printed during
that import is passed on.
"""

import argparse
import os
import re
import sys
import tempfile

from supernet_lab import DEFAULT_OUT


# Lines of TensorFlow's and absl's C++ logging: "I0000 00:00:17.1 123 port.cc:153] ...".
_CPP_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\S+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit code 2, the same shape as the errors `main` reports.
        self.exit(2, f"supernet: error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    parser = _Parser(prog="supernet", description="SuperNet ensembles: experiments and reports.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = commands.add_parser("list", help="experiments, their presets and the thesis table each reproduces")
    listing.add_argument("--markdown", action="store_true", help="as the README's Markdown table")

    run = commands.add_parser("run", help="run one experiment and append its results")
    run.add_argument("name")
    run.add_argument("--preset", default="smoke", help="smoke | cpu | paper (default: smoke)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    seeds.add_argument("--seeds", default=None, metavar="LIST", help="a sweep: one full run per seed, e.g. 0,1,2 or 0-7")
    run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (0-based) of the sweep's seeds")
    run.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder for the record, tables and figures (default: ./{DEFAULT_OUT}); "
        "`--out reports` updates the committed reports",
    )
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--quiet", action="store_true", help="no progress output")

    report = commands.add_parser("report", help="re-render tables and figures from stored results")
    report.add_argument("--out", default="reports", help="reports folder (default: reports)")

    bench = commands.add_parser("bench", help="benchmarks: fused ensembles vs plain Keras, side by side")
    bench.add_argument("--quick", action="store_true", help="smaller data, one epoch")
    bench.add_argument("--out", default=DEFAULT_OUT, help=f"folder for benchmarks.md (default: ./{DEFAULT_OUT})")
    bench.add_argument("--scaling", action="store_true", help="also the scaling table: K = 1 to 16 members, two widths")
    return parser


def import_backend_quietly():
    """Import Keras and initialise its backend with TensorFlow's C++ start-up lines filtered out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # the CUDA probe logs here, not at the first op
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not _CPP_LOG_LINE.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def _overrides(pairs):
    overrides = []
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"Overrides are --set KEY=VALUE. Received: --set {text}")
        overrides.append((key.strip(), value))
    return overrides


def main(argv=None):
    """Entry point of the `supernet` console script."""
    args = build_parser().parse_args(argv)
    from supernet_lab import catalog

    try:
        if args.command == "list" and args.markdown:
            print(catalog.markdown_index())
        elif args.command == "list":
            for name in catalog.EXPERIMENTS:
                entry = catalog.describe(name)
                print(f"{name:28s} {entry.reproduces}")
                print(f"{'':28s} {entry.description}")
                print(f"{'':28s} presets: {', '.join(entry.presets)}")
        elif args.command == "run":
            overrides = _overrides(args.overrides)
            catalog.check_name(args.name)
            import_backend_quietly()
            from supernet_lab import runner

            shard = None if args.shard is None else runner.parse_shard(args.shard)
            seeds = [args.seed] if args.seed is not None else None
            if args.seeds is not None:
                seeds = runner.parse_seeds(args.seeds)
            overrides = runner.parse_overrides(args.name, args.preset, overrides)
            if shard is None and seeds is None:
                runner.run_experiment(args.name, args.preset, None, args.out, overrides, verbose=not args.quiet)
            else:
                runner.run_sweep(args.name, args.preset, seeds, args.out, overrides, shard, verbose=not args.quiet)
        elif args.command == "bench":
            import_backend_quietly()
            from supernet_lab import bench

            bench.run(quick=args.quick, out_dir=args.out, scaling=args.scaling)
        elif args.command == "report":
            import_backend_quietly()
            from supernet_lab import runner

            for path in runner.render_reports(args.out):
                print(path)
    except (ValueError, FileNotFoundError) as error:
        # User errors (a bad value, an unknown name, a dataset missing from the
        # data directory) are one line; anything else is a bug and keeps its traceback.
        if isinstance(error, FileNotFoundError) and not _is_missing_dataset(error):
            raise
        print("supernet: error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    return 0


def _is_missing_dataset(error):
    from supernet.data import DatasetNotFoundError

    return isinstance(error, DatasetNotFoundError)


if __name__ == "__main__":
    sys.exit(main())


def main_module(name, argv=None):
    """`python -m experiments.NAME [--preset P] [--seed N] [--out DIR]`: `supernet run NAME ...`."""
    sys.exit(main(["run", name, *(sys.argv[1:] if argv is None else argv)]))
