"""`python -m experiments.NAME` from the repository root.

The experiment modules live in `supernet_lab.experiments`; this package is
not installed and only points its path there, so that the short form keeps
working in a clone. `supernet run NAME` works from anywhere.
"""

import supernet_lab.experiments as _lab

__path__ = _lab.__path__
