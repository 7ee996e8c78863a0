"""The benchmarks (make bench, bench/) at tiny sizes, so their code keeps working: every figure is produced and
sane. Whether the targets are met is what `make bench` reports; it is not checked here."""
from __future__ import annotations

import math

import pytest

from bench import a_ingest, b_rescan, c_memory, d_feed, e_ratelimit
from bench.common import RAW, BenchStack, Figures, modelled, table


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    state = tmp_path_factory.mktemp("bench")
    started = []
    try:
        for mode in (RAW, modelled(graph_latency=0.05, cosmos_delay_ms=1)):
            started.append(BenchStack(mode, state_dir=state).start())
        yield started
    finally:
        for stack in started:
            stack.stop()


def _median(figures, key, mode="raw"):
    stats = figures[key].stats(mode)
    assert stats is not None, f"{key} has no {mode} sample"
    assert all(math.isfinite(v) for v in stats), (key, stats)
    return stats[0]


def test_ingest_and_rescan_in_both_modes(stacks):
    figures = Figures()
    for stack in stacks:
        a_ingest.measure(stack, 300, figures,
                         after_collect=lambda settings, first, mode=stack.mode.name:
                         b_rescan.measure(mode, settings, first, figures))
    for mode in ("raw", "modelled"):
        assert _median(figures, "a.collector", mode) > 0 and _median(figures, "a.baseline", mode) > 0
        assert _median(figures, "a.ratio", mode) > 0
        assert _median(figures, "a.pages", mode) >= 1 and _median(figures, "a.requests", mode) >= 1
        assert _median(figures, "b.rescan", mode) > 0
        assert _median(figures, "b.written", mode) == 0 and _median(figures, "b.etags", mode) == 0
    assert "(a) collector speed-up" in table(figures, ["raw", "modelled"])


def test_memory_of_a_collecting_process(stacks):
    figures = Figures()
    c_memory.measure(stacks[0], 200, 600, figures)
    assert 10 < _median(figures, "c.peak.200") < 2000 and 10 < _median(figures, "c.peak.600") < 2000
    assert 0.5 < _median(figures, "c.ratio") < 5


def test_feed_streaming_and_concurrent_clients(stacks):
    figures = Figures()
    d_feed.measure(stacks[0], 700, figures, runs=1, clients=2, seconds=1.0)
    assert _median(figures, "d.feed") > 0 and _median(figures, "d.store") > 0 and _median(figures, "d.ratio") > 0
    assert _median(figures, "d.clients_requests") >= 1 and _median(figures, "d.clients_errors") == 0
    assert 0 < _median(figures, "d.clients_p50") <= _median(figures, "d.clients_p99")


def test_graph_request_rate_and_429s(stacks):
    figures = Figures()
    result = e_ratelimit.measure(stacks[1], 20.0, 300, 25, figures, subwindows=4)
    assert result["requests"] >= 12 and result["achieved"] > 0
    assert _median(figures, "e.ratio", "modelled") > 0 and _median(figures, "e.429", "modelled") >= 0
