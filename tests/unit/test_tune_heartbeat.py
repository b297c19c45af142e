"""A trial's heartbeat thread never holds the finished trial back, even when the database hangs."""

from __future__ import annotations

import threading
import time

from steelflow.tuning.trial import heartbeat


class HangingStorage:
    """A storage whose heartbeat call never returns (a connection to a server that went away)."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.release = threading.Event()

    def record_heartbeat(self, trial_id: int) -> None:
        self.called.set()
        self.release.wait()


def test_a_heartbeat_stuck_in_the_database_does_not_hang_the_trials_end():
    storage = HangingStorage()
    started = time.monotonic()
    with heartbeat(storage, trial_id=1, interval=0.2):
        assert storage.called.wait(5)
    took = time.monotonic() - started
    storage.release.set()
    assert took < 5, f"the trial waited {took:.1f} s for a stuck heartbeat"
