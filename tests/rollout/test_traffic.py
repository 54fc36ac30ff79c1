"""TrafficSplit: seeded weighted choice, pinning, validation of the admin body, and the atomic table swap."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from pydantic import ValidationError

from kserve_llmd.errors import InvalidRequestError
from kserve_llmd.router.traffic import TrafficSplit, TrafficUpdate


def _update(model: str, **weights: float) -> TrafficUpdate:
    return TrafficUpdate.model_validate(
        {
            "model": model,
            "versions": [
                {"name": name, "weight": w, "endpoints": [f"http://{name}.{model}:8000/"]}
                for name, w in weights.items()
            ],
        }
    )


def test_unsplit_model_routes_as_usual() -> None:
    split = TrafficSplit(random.Random(0))
    assert split.choose("m") is None
    with pytest.raises(InvalidRequestError, match="has no traffic split"):
        split.choose("m", pinned="canary")


def test_weighted_choice_follows_the_weights() -> None:
    split = TrafficSplit(random.Random(7))
    split.apply(_update("m", stable=90, canary=10))
    counts = Counter(split.choose("m").name for _ in range(20_000))  # type: ignore[union-attr]
    assert counts["stable"] + counts["canary"] == 20_000
    assert 0.085 < counts["canary"] / 20_000 < 0.115


def test_same_seed_same_sequence() -> None:
    a, b = TrafficSplit(random.Random(3)), TrafficSplit(random.Random(3))
    for s in (a, b):
        s.apply(_update("m", x=1, y=1, z=2))
    assert [a.choose("m").name for _ in range(200)] == [b.choose("m").name for _ in range(200)]  # type: ignore[union-attr]


def test_zero_weight_is_never_drawn_but_can_be_pinned() -> None:
    split = TrafficSplit(random.Random(1))
    split.apply(_update("m", stable=0, canary=1, other=0))
    assert {split.choose("m").name for _ in range(2_000)} == {"canary"}  # type: ignore[union-attr]
    pinned = split.choose("m", pinned="stable")
    assert pinned is not None
    assert pinned.endpoints == ("http://stable.m:8000",)
    with pytest.raises(InvalidRequestError, match="has no version 'nope'"):
        split.choose("m", pinned="nope")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "m", "versions": []}, "at least 1"),
        ({"model": "m", "versions": [{"name": "a", "weight": 0, "endpoints": ["http://a"]}]}, "weight above 0"),
        ({"model": "m", "versions": [{"name": "a", "weight": -1, "endpoints": ["http://a"]}]}, "greater than or"),
        ({"model": "m", "versions": [{"name": "a", "weight": 1, "endpoints": ["tcp://a"]}]}, "not an http(s) URL"),
        (
            {"model": "m", "versions": [{"name": "a", "weight": 1, "endpoints": ["http://a"]}] * 2},
            "must be unique",
        ),
        ({"model": "m", "versions": [{"name": "a", "weight": 1, "endpoints": ["http://a"], "x": 1}]}, "Extra"),
    ],
)
def test_admin_body_validation(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        TrafficUpdate.model_validate(body)


def test_update_replaces_one_model_and_remove() -> None:
    split = TrafficSplit(random.Random(0))
    split.apply(_update("a", v1=1))
    split.apply(_update("b", v1=1, v2=1))
    split.apply(_update("a", v2=1))
    assert {m: [v["name"] for v in vs] for m, vs in split.snapshot().items()} == {"a": ["v2"], "b": ["v1", "v2"]}
    assert split.endpoints() == {"http://v2.a:8000", "http://v1.b:8000", "http://v2.b:8000"}
    assert split.remove("a")
    assert not split.remove("a")
    assert split.choose("a") is None


def test_chosen_version_survives_an_update() -> None:
    """An in-flight request keeps the (immutable) version it chose, whatever happens to the table after."""
    split = TrafficSplit(random.Random(0))
    split.apply(_update("m", stable=1))
    chosen = split.choose("m")
    split.apply(_update("m", canary=1))
    split.remove("m")
    assert chosen is not None
    assert chosen.name == "stable"
    assert chosen.endpoints == ("http://stable.m:8000",)


def test_readers_never_see_a_half_applied_table() -> None:
    """Writers swap between two complete tables; every read matches one of them, never a mix of both."""
    split = TrafficSplit(random.Random(0))
    table_a = TrafficUpdate.model_validate(
        {"model": "m", "versions": [{"name": "stable", "weight": 1, "endpoints": ["http://a1"]},
                                    {"name": "canary", "weight": 0, "endpoints": ["http://a2"]}]}
    )  # fmt: skip
    table_b = TrafficUpdate.model_validate(
        {"model": "m", "versions": [{"name": "stable", "weight": 0, "endpoints": ["http://b1"]},
                                    {"name": "canary", "weight": 1, "endpoints": ["http://b2"]}]}
    )  # fmt: skip
    split.apply(table_a)
    allowed = {("stable", ("http://a1",)), ("canary", ("http://b2",))}
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            split.apply(table_b)
            split.apply(table_a)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = set()
        for _ in range(20_000):
            version = split.choose("m")
            assert version is not None
            seen.add((version.name, version.endpoints))
    finally:
        stop.set()
        thread.join()
    assert seen <= allowed
