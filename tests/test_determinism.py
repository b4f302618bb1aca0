"""--deterministic: two processes, same seed, backend and machine -> identical runs."""

import numpy as np
import pytest

from processes import history, weights

pytestmark = pytest.mark.process  # two kvt train processes, compared


def test_two_deterministic_processes_train_identically(killed_and_resumed):
    """The run trained straight through and the one killed after epoch 2 were trained by
    different processes: their first two epochs, and (after the resume) their final
    weights, must be identical."""
    run = killed_and_resumed
    full = history(run.full)
    assert len(run.killed.history) >= 2 and run.killed.history == full[:len(run.killed.history)]
    assert run.resumed.returncode == 0, run.resumed.stderr[-2000:]
    wa, wb = weights(run.full), weights(run.part)
    assert wa.keys() == wb.keys() and len(wa) > 20
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
