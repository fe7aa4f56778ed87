"""Property tests of the queue and of the service-time estimate."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from serve.admission import EVERY, WINDOW, ServiceTimeEstimator, predict_finish
from serve.jobqueue import JobQueue

_ops = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 3), st.sampled_from([0.0, 1.0, 2.5, math.inf])),
    st.tuples(st.just("pop"), st.just(0), st.just(0.0)),
    st.tuples(st.just("remove"), st.integers(0, 40), st.just(0.0)),
), max_size=60)


@settings(max_examples=200)
@given(_ops)
def test_queue_matches_a_sorted_model(ops) -> None:
    queue: JobQueue[int] = JobQueue()
    model: list[tuple[int, float, int]] = []
    for seq, (op, a, b) in enumerate(ops):
        if op == "insert":
            key = (a, b, seq)
            ahead = queue.position(key)
            assert ahead == sum(k < key for k in model)  # what admission control predicts from
            queue.insert(key, seq, ahead)
            model.append(key)
        elif op == "pop" and model:
            smallest = min(model)
            assert queue.pop() == smallest[2]
            model.remove(smallest)
        elif op == "remove" and model:
            key = sorted(model)[a % len(model)]
            assert queue.remove(key) == key[2]
            assert queue.remove(key) is None  # gone: a second removal finds nothing
            model.remove(key)
        assert len(queue) == len(model)
        assert queue.keys() == sorted(model)


@given(st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=EVERY - 1))
def test_estimate_is_the_exact_quantile_while_the_window_fills(samples) -> None:
    est = ServiceTimeEstimator(quantile=0.9)
    for x in samples:
        est.add(x)
    ordered = sorted(samples)
    assert est.estimate == ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


@given(st.lists(st.floats(1e-6, 10.0), max_size=3 * WINDOW), st.floats(1e-6, 10.0))
def test_the_estimate_forgets_old_samples(history, now) -> None:
    est = ServiceTimeEstimator()
    for x in history:
        est.add(x)
    for _ in range(WINDOW + EVERY):
        est.add(now)
    assert est.estimate == now


@given(st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=2 * WINDOW))
def test_the_estimate_stays_within_the_samples_it_saw(samples) -> None:
    est = ServiceTimeEstimator()
    for x in samples:
        est.add(x)
        assert min(samples) <= est.estimate <= max(samples)


def test_prediction_counts_the_work_ahead() -> None:
    assert predict_finish(2.0, 0, 1, 1, 0.0) == 2.0  # idle: just its own service
    assert predict_finish(2.0, 3, 1, 0, 0.5) == 0.5 + 3 * 2.0 + 2.0  # one instance: exact
    assert predict_finish(2.0, 1, 2, 2, 0.0) == 2.0  # a second idle instance takes it
    assert predict_finish(2.0, 4, 2, 0, 2.0) == (2.0 + 4 * 2.0) / 2 + 2.0  # shared by two
