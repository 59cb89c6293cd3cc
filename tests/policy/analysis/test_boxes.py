"""Interval boxes of rules (boxes.py): the sweep finds exactly the pairs that meet, and a
box contains every request its term holds on."""

from __future__ import annotations

import random

import pytest
import z3

from ordinance.policy.analysis.boxes import Box, box_of, neighbours, overlap


@pytest.mark.parametrize("seed", range(5))
def test_the_sweep_finds_every_pair_that_meets(seed: int) -> None:
    rng = random.Random(seed)
    boxes: dict[str, Box | None] = {}
    for n in range(40):
        box: Box = {}
        for var in rng.sample(range(3), rng.randint(0, 3)):
            lo = rng.randrange(0, 100)
            box[var] = (lo if rng.random() < 0.9 else float("-inf"), lo + rng.randrange(0, 20))
        boxes[f"r{n}"] = box if rng.random() < 0.95 else None
    near = neighbours(boxes)
    for a, box_a in boxes.items():
        assert near[a] == {b for b, box_b in boxes.items() if overlap(box_a, box_b)}, a


def test_a_box_holds_every_model_of_its_term() -> None:
    x, y, c = z3.Ints("x y c")
    term = z3.And(
        x > 3,
        z3.IntVal(10) >= x,
        z3.Or(c == 1, c == 4),
        z3.Not(y < 2),
        z3.Or(x == 5, y == 7),
        y != 9,
    )
    box = box_of(term)
    assert box == {x.get_id(): (4, 10), c.get_id(): (1, 4)}
    assert box_of(z3.And(x > 3, x < 2)) is None
    solver = z3.Solver()
    solver.add(term)
    for _ in range(20):  # every model is inside the box
        assert solver.check() == z3.sat
        m = solver.model()
        for var in (x, c):
            lo, hi = box[var.get_id()]
            assert lo <= m.eval(var).as_long() <= hi
        solver.add(z3.Or(x != m.eval(x), c != m.eval(c), y != m.eval(y)))
