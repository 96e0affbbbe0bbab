import math

from harness.measure.timing import Interleaved, Timing, time_call


def test_min_repeats_and_warmup_are_honoured():
    calls = []
    timing = time_call(lambda: calls.append(1), warmup=2, min_time=0.0, min_repeats=5)
    assert timing.repeats == 5
    assert len(calls) == 7  # 2 warm-up calls are not timed
    assert len(timing.cpu) == 5


def test_max_repeats_bounds_a_cheap_call():
    timing = time_call(lambda: None, warmup=0, min_time=10.0, min_repeats=1, max_repeats=20)
    assert timing.repeats == 20


def test_summary_statistics():
    t = Timing(wall=[1.0, 2.0, 3.0, 4.0, 100.0], cpu=[1.0] * 5)
    assert t.median == 3.0
    assert t.minimum == 1.0
    assert t.iqr == 2.0  # quartiles 2 and 4 (inclusive method)
    assert Timing(wall=[5.0]).iqr == 0.0


def test_interleaved_rotates_the_order_and_keeps_setups_out_of_the_samples():
    order, given = [], []

    def runner(name):
        def run(*args):
            order.append(name)
            given.append(args)

        return run

    timer = Interleaved(
        {"a": runner("a"), "b": runner("b"), "c": runner("c")},
        setups={"b": lambda: ("from setup",)},
        warmup=1,
    )
    for _ in range(4):
        timer.round()
    assert order == list("abc" "bca" "cab" "abc")
    assert given[1] == ("from setup",) and given[0] == ()
    assert {k: len(v) for k, v in timer.times.items()} == {"a": 3, "b": 3, "c": 3}
    assert set(timer.medians()) == {"a", "b", "c"}
    assert all(math.isnan(v) for v in Interleaved({"a": runner("a")}).medians().values())
