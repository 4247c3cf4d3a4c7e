"""deconv2sub.runtime.timing: the timing loop and bench_models' results (never speed itself)."""

from __future__ import annotations

import json
import time

import pytest
from surface_builders import add_chain_model, converted, two_deconv_model

from deconv2sub.errors import InputError
from deconv2sub.runtime.base import Runner, RuntimeInfo
from deconv2sub.runtime.timing import bench_models, percentile, random_feeds, time_runners


class _Recorder(Runner):
    """A runner that records which label ran, and on which feeds, in a shared log."""

    def __init__(self, label, log):
        super().__init__(RuntimeInfo("fake", "CPU"), [], ["y"], label)
        self.label, self.log = label, log

    def run(self, feeds, output_names=None):
        """Not called by the timing loop."""
        raise AssertionError("the timing loop calls run_for_timing")

    def run_for_timing(self, feeds):
        """Log the call."""
        self.log.append((self.label, feeds["x"]))


@pytest.mark.parametrize("interleave", [True, False])
def test_bench_models_structure(interleave):
    """Every model gets its runs, statistics are ordered, the JSON is complete and strict."""
    original = two_deconv_model()
    feeds = random_feeds(original)
    calls = []
    res = bench_models({"original": original, "candidate": converted(original)}, feeds,
                       warmup=1, runs=3, threads=1, interleave=interleave,
                       progress=lambda *a: calls.append(a))
    assert list(res.results) == ["original", "candidate"]
    for r in res.results.values():
        assert len(r.times) == 3 and r.warmup == 1 and all(t > 0 for t in r.times)
        assert r.min <= r.median <= r.p90 <= max(r.times) and r.mean > 0
        assert r.runtime.device in ("CPU", "CUDA")
    medians = res.results["original"].median / res.results["candidate"].median
    assert res.speedup("original", "candidate") == medians
    d = json.loads(json.dumps(res.to_dict()))
    assert d["interleaved"] is interleave and d["threads"] == 1
    assert d["graph_optimizations"] is True
    assert d["speedup"] == pytest.approx(d["models"][0]["median_ms"] / d["models"][1]["median_ms"])
    assert calls and calls[-1][1] == calls[-1][2] == 6  # progress reached the end: 2 x 3 runs


def test_bench_models_errors():
    """No models, no runs, and feeds lacking an input are refused."""
    m = add_chain_model(2)
    with pytest.raises(InputError):
        bench_models({}, {})
    with pytest.raises(InputError, match="runs"):
        bench_models({"a": m}, random_feeds(m), runs=0)
    with pytest.raises(InputError, match="needs input 'x'"):
        bench_models({"a": m}, {})


def test_percentile():
    """Percentiles interpolate linearly, as numpy's default."""
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 90) == 5
    assert percentile(list(range(11)), 90) == pytest.approx(9)


@pytest.mark.parametrize("interleave", [True, False])
def test_time_runners_order_and_feeds(interleave):
    """Warm-ups first, one runner after another; then alternating rounds, or runner by runner."""
    log = []
    runners = {label: _Recorder(label, log) for label in ("a", "b", "c")}
    feeds = {label: {"x": label.upper()} for label in runners}
    times = time_runners(runners, feeds, warmup=2, runs=3, interleave=interleave)
    assert all(x == label.upper() for label, x in log)  # each runner got its own feeds
    order = [label for label, _ in log]
    assert order[:6] == ["a", "a", "b", "b", "c", "c"]
    if interleave:
        assert order[6:] == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    else:
        assert order[6:] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert list(times) == ["a", "b", "c"]
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in times.values())


class _Sleeper(_Recorder):
    """A runner whose run takes a millisecond."""

    def run_for_timing(self, feeds):
        """Log the call, then sleep 1 ms."""
        super().run_for_timing(feeds)
        time.sleep(1e-3)


def test_default_timed_run_times_run_for_timing():
    """``Runner.timed_run`` is the seconds of one ``run_for_timing`` call, as a positive float."""
    log = []
    t = _Sleeper("a", log).timed_run({"x": 1})
    assert isinstance(t, float) and 1e-3 <= t < 1.0
    assert log == [("a", 1)]


class _Clock(_Recorder):
    """A runner that reports planted times: as a runner in another process would."""

    def __init__(self, label, log, seconds):
        super().__init__(label, log)
        self.seconds = list(seconds)

    def timed_run(self, feeds):
        """The next planted time (the run itself happens elsewhere)."""
        self.log.append((self.label, feeds["x"]))
        return self.seconds.pop(0)


@pytest.mark.parametrize("interleave", [True, False])
def test_time_runners_reports_what_timed_run_measured(interleave):
    """The times of the loop are ``timed_run``'s own, not a clock around it; warm-ups untimed."""
    log = []
    runners = {"a": _Clock("a", log, [3.0, 1.0, 2.0]), "b": _Clock("b", log, [0.5, 0.25, 0.75])}
    times = time_runners(runners, {k: {"x": k} for k in runners}, warmup=1, runs=3,
                         interleave=interleave)
    assert times == {"a": [3.0, 1.0, 2.0], "b": [0.5, 0.25, 0.75]}
    assert len(log) == 2 + 6  # one warm-up each (run_for_timing), then the timed runs
