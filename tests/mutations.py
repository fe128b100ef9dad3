"""Seeded structural mutations of JSON documents, for hostile-input tests.

``mutate(doc, rng)`` changes one to three places of a JSON value in place: a value of another
type, an edge-case number, a truncated or altered string, random base64, a list grown or shrunk,
a deleted key. The same seed gives the same mutations, so a failure names a case that replays.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from typing import Any

Path = tuple[Any, ...]


def paths(doc: Any, path: Path = ()) -> Iterator[Path]:
    """Every place in ``doc`` (the root first)."""
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, (*path, i))


def _other(rng: random.Random, old: Any) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([0, -1, 2**63, 2**64 + 5, 1.5, True])
    if choice == 2:
        return rng.choice(["0", "-1", str(2**63), "1e3", " 5"])
    if choice == 3:
        return []
    if choice == 4:
        return {}
    if choice == 5:
        return base64.b64encode(rng.randbytes(rng.randrange(64))).decode()
    if choice == 6 and isinstance(old, str):
        return old[: rng.randrange(len(old) + 1)]
    if choice == 7 and isinstance(old, str) and old:
        i = rng.randrange(len(old))
        return old[:i] + rng.choice("\n A=-\u2014\x00\u2028") + old[i + 1 :]
    if choice == 8 and isinstance(old, list) and old:
        return old + old[:1]
    if choice == 9 and isinstance(old, list) and old:
        return old[1:]
    if choice == 10 and isinstance(old, int) and not isinstance(old, bool):
        return old + rng.choice([-1, 1, 2**32])
    return [old]


def mutate(doc: Any, rng: random.Random) -> list[Path]:
    """Mutate ``doc`` in place at one to three places; returns the places touched."""
    places = list(paths(doc))[1:]
    touched: list[Path] = []
    for _ in range(rng.randint(1, 3)):
        place = rng.choice(places)
        parent = doc
        try:
            for key in place[:-1]:
                parent = parent[key]
            old = parent[place[-1]]
            if isinstance(parent, dict) and rng.random() < 0.15:
                del parent[place[-1]]
            else:
                parent[place[-1]] = _other(rng, old)
        except (KeyError, IndexError, TypeError):  # an earlier mutation moved this place
            continue
        touched.append(place)
    return touched
