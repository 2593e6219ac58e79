"""The lab built on `supernet`: experiment runner, CLI, experiments, benchmarks.

`supernet` (the library users import) never imports this package. Importing
`supernet_lab` itself is instant: nothing here imports Keras until a command
needs it.
"""

# Where runs and the bench write unless told otherwise (git-ignored); the
# committed tables in `reports/` change only with `--out reports`.
DEFAULT_OUT = "out"
