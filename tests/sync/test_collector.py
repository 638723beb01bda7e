"""While syncs run the cyclic collector is set aside (sync.run._Collector); after the last it is as before."""

from __future__ import annotations

import gc
import threading

from playbookd.sync.run import _Collector
from playbookd.workers.child import FIRST_GENERATION


def test_the_collector_is_set_back_after_the_last_of_overlapping_syncs() -> None:
    before = gc.get_threshold()
    collector = _Collector()
    first_in, second_in, second_out = threading.Event(), threading.Event(), threading.Event()

    def second() -> None:
        first_in.wait()
        with collector.aside():
            second_in.set()
            second_out.wait()

    thread = threading.Thread(target=second)
    thread.start()
    with collector.aside():
        first_in.set()
        second_in.wait()
        assert gc.get_threshold()[0] == max(before[0], FIRST_GENERATION)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == max(before[0], FIRST_GENERATION)  # the other still runs
    second_out.set()
    thread.join()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_objects_frozen_before_a_sync_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _Collector().aside():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


def test_the_collector_is_set_back_when_a_sync_fails() -> None:
    before = gc.get_threshold()
    try:
        with _Collector().aside():
            raise RuntimeError("the store went away")
    except RuntimeError:
        pass
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)
