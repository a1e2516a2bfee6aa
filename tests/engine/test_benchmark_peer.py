"""``benchmarks.common.PeerProcess``: the benchmarks' PyTorch peer steps in a child process
of its own and reports the time it measured there; failures there surface here."""

from __future__ import annotations

import functools
import operator
import time

import pytest

from benchmarks.common import PeerProcess, interleaved, timed


def test_a_peer_step_reports_the_time_measured_in_the_child():
    peer = PeerProcess(functools.partial, time.sleep, 0.05)
    try:
        assert peer.pid > 0
        seconds = [peer() for _ in range(3)]
        assert all(isinstance(s, float) and 0.05 <= s < 2.0 for s in seconds)
        both = interleaved({"peer": peer, "here": functools.partial(time.sleep, 0.01)},
                           repeats=3)
        assert 0.05 <= both["peer"] < 2.0 and 0.01 <= both["here"] < 2.0
    finally:
        peer.close()
    assert not peer._proc.is_alive()


def test_timed_takes_a_reported_time_and_otherwise_the_wall_time():
    assert timed(lambda: 123.0) == 123.0
    assert 0.02 <= timed(functools.partial(time.sleep, 0.02)) < 2.0


def test_failures_in_the_peer_are_raised_in_the_parent():
    with pytest.raises(RuntimeError, match="peer process failed") as info:
        PeerProcess(operator.truediv, 1, 0)  # the factory fails
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    peer = PeerProcess(functools.partial, operator.truediv, 1, 0)  # the step fails
    try:
        with pytest.raises(RuntimeError, match="peer process failed"):
            peer()
    finally:
        peer.close()
