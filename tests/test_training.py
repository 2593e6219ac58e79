"""Recipes shared by the experiments: progress output."""

import pytest

from supernet.training import epoch_logger


@pytest.mark.parametrize(
    "total, every, silence, logged",
    [
        (100, None, 1e9, [20, 40, 60, 80, 100]),  # a fifth of the run, and the last epoch
        (7, 3, 1e9, [3, 6, 7]),
        (5, None, 0.0, [1, 2, 3, 4, 5]),  # every epoch once more than `max_silence_s` has passed
    ],
)
def test_epoch_logger_reports_every_few_epochs_and_never_stays_silent(total, every, silence, logged):
    lines = []
    callback = epoch_logger(lines.append, total, every=every, max_silence_s=silence)
    for epoch in range(total):
        callback.on_epoch_end(epoch, {"loss": 0.5})
    assert [int(line.split()[1].split("/")[0]) for line in lines] == logged
    assert lines[-1] == f"  epoch {total}/{total}: loss 0.5000"
