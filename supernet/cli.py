"""The `supernet` command: parses arguments and dispatches, nothing more."""

import argparse
import sys


def _parse_override(text):
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"Overrides are KEY=VALUE. Received: {text!r}")
    import ast

    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser():
    parser = argparse.ArgumentParser(prog="supernet", description="SuperNet ensembles: experiments and reports.")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="experiments, their presets and the thesis table each reproduces")
    listing.add_argument("--markdown", action="store_true", help="as the README's Markdown table")

    run = commands.add_parser("run", help="run one experiment and append its results")
    run.add_argument("name")
    run.add_argument("--preset", default="smoke", help="smoke | cpu | paper (default: smoke)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    seeds.add_argument("--seeds", default=None, metavar="LIST", help="a sweep: one full run per seed, e.g. 0,1,2 or 0-7")
    run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (0-based) of the sweep's seeds")
    run.add_argument("--out", default="reports", help="reports folder (default: reports)")
    run.add_argument("--set", dest="overrides", action="append", type=_parse_override, default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--quiet", action="store_true", help="no progress output")

    report = commands.add_parser("report", help="re-render tables and figures from stored results")
    report.add_argument("--out", default="reports")

    bench = commands.add_parser("bench", help="benchmarks: fused ensembles vs plain Keras, side by side")
    bench.add_argument("--quick", action="store_true", help="smaller data, one epoch")
    bench.add_argument("--out", default="reports")
    return parser


def main(argv=None):
    """Entry point of the `supernet` console script."""
    args = build_parser().parse_args(argv)
    from supernet import experiment

    try:
        if args.command == "list" and args.markdown:
            print(experiment.markdown_index())
        elif args.command == "list":
            for name in experiment.EXPERIMENTS:
                module = experiment.load_module(name)
                print(f"{name:28s} {module.REPRODUCES}")
                print(f"{'':28s} {module.DESCRIPTION}")
                print(f"{'':28s} presets: {', '.join(module.PRESETS)}")
        elif args.command == "run":
            shard = None if args.shard is None else experiment.parse_shard(args.shard)
            seeds = [args.seed] if args.seed is not None else None
            if args.seeds is not None:
                seeds = experiment.parse_seeds(args.seeds)
            if shard is None and seeds is None:
                experiment.run_experiment(args.name, args.preset, None, args.out, dict(args.overrides), verbose=not args.quiet)
            else:
                experiment.run_sweep(args.name, args.preset, seeds, args.out, dict(args.overrides), shard, verbose=not args.quiet)
        elif args.command == "bench":
            from benchmarks import bench as benchmark

            benchmark.run(quick=args.quick, out_dir=args.out)
        elif args.command == "report":
            for path in experiment.render_reports(args.out):
                print(path)
    except ValueError as error:
        print(f"supernet: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
