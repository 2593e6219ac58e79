"""Experiment modules: one per thesis table or figure group.

Run one with `supernet run NAME --preset smoke|cpu|paper` or
`python -m experiments.NAME`; list them with `supernet list`.
"""
