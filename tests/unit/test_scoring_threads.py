"""How many threads a scoring shard's model may use (airtrain.serving.scoring.scoring_threads): the
machine's cores shared by the date's shards, which run at once, or the operator's setting."""

from __future__ import annotations

import os

import pytest
from airtrain.serving.scoring import THREADS_ENV, scoring_threads
from airtrain.serving.target import ScoringError


def test_the_cores_are_shared_by_the_shards_and_never_fewer_than_one(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [scoring_threads(s) for s in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_the_operator_setting_wins(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, " 3 ")
    assert scoring_threads(1) == scoring_threads(64) == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_setting_is_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ScoringError, match=f"{THREADS_ENV} must be a whole number of threads >= 1"):
        scoring_threads(2)
