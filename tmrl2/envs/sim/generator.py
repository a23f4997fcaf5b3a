"""Seeded procedural tracks: varied, drivable point-to-point roads for multi-track training.

:func:`generate_track` lays a course of random pieces (see :data:`~tmrl2.envs.sim.track.Piece`)
from a seeded generator: long straights (some with a crest that throws a fast car into the
air), medium and fast bends, hairpins, chicanes, gentle climbs and descents, sometimes a dirt
section. A layout whose road would cross or touch itself is thrown away and drawn again
(from the same generator, so a seed always gives the same track). Turns lean back towards the
start direction, which keeps most layouts from spiralling into themselves.
"""

from __future__ import annotations

import numpy as np

from tmrl2.envs.sim.track import DIRT, Piece, Track, build_track, course_points

MIN_RADIUS_M = 14.0
"""Tightest bend radius (a hairpin); the walls need at least half the width plus a margin."""
MAX_TRIES = 200
"""Layouts drawn before giving up on a seed (never reached in practice)."""


def _straight(rng: np.random.Generator) -> list[Piece]:
    length = float(rng.uniform(60.0, 260.0))
    if length > 150.0 and rng.random() < 0.4:
        # A crest: climb and drop over short pieces; fast cars take off.
        up, down = float(rng.uniform(2.0, 4.0)), float(rng.uniform(3.0, 5.0))
        rest = length - 70.0
        return [(0.0, rest / 2, 0.0), (0.0, 30.0, up), (0.0, 40.0, -down), (0.0, rest / 2, 0.0)]
    return [(0.0, length, float(rng.uniform(-0.03, 0.03)) * length)]


def _bend(rng: np.random.Generator, sign: float) -> list[Piece]:
    turn = float(rng.uniform(30.0, 120.0))
    radius = float(rng.uniform(30.0, 140.0))
    return [(sign * turn, radius * np.radians(turn), float(rng.uniform(-2.0, 2.0)))]


def _hairpin(rng: np.random.Generator, sign: float) -> list[Piece]:
    turn = float(rng.uniform(150.0, 180.0))
    radius = float(rng.uniform(MIN_RADIUS_M, 22.0))
    return [(0.0, 40.0, 0.0), (sign * turn, radius * np.radians(turn), 0.0), (0.0, 40.0, 0.0)]


def _chicane(rng: np.random.Generator, sign: float) -> list[Piece]:
    turn = float(rng.uniform(35.0, 70.0))
    radius = float(rng.uniform(25.0, 50.0))
    arc = radius * np.radians(turn)
    return [(sign * turn, arc, 0.0), (0.0, 10.0, 0.0), (-sign * turn, arc, 0.0)]


def _course(rng: np.random.Generator, length_m: float) -> list[Piece]:
    pieces: list[Piece] = [(0.0, 80.0, 0.0)]
    heading = 0.0
    total = 80.0
    while total < length_m:
        # Lean back towards the start direction (+x) so the road does not coil up.
        lean = -np.sign(heading) if abs(heading) > 30.0 else (1.0 if rng.random() < 0.5 else -1.0)
        sign = float(lean if rng.random() < 0.75 else -lean)
        kind = rng.choice(["straight", "bend", "hairpin", "chicane"], p=[0.35, 0.35, 0.12, 0.18])
        if kind == "straight":
            new = _straight(rng)
        elif kind == "bend":
            new = _bend(rng, sign)
        elif kind == "hairpin":
            new = _hairpin(rng, sign)
        else:
            new = _chicane(rng, sign)
        pieces += new
        heading += sum(p[0] for p in new)
        total += sum(p[1] for p in new)
    pieces.append((0.0, 60.0, 0.0))  # finish straight
    return pieces


def crosses_itself(track: Track) -> bool:
    """Whether two parts of the road, far apart along it, come closer than a road width plus
    a margin (including the run-off past the finish)."""
    xz = track.points[::2, [0, 2]]
    s = track.s_m[::2]
    gap = track.width_m.max() + 8.0
    for k in range(0, len(xz), 4):
        far = np.abs(s - s[k]) > 3.0 * gap + 30.0
        dist = np.hypot(xz[far, 0] - xz[k, 0], xz[far, 1] - xz[k, 1])
        if dist.size and dist.min() < gap:
            return True
    return False


def generate_track(
    seed: int, length_m: float = 1000.0, width_m: float = 14.0, walls: bool = True
) -> Track:
    """A random drivable point-to-point track of about ``length_m`` (same seed, same track).

    Args:
        seed: seed of the layout.
        length_m: approximate length to the finish.
        width_m: road width.
        walls: walls along the borders (``False``: open borders with grass).
    """
    rng = np.random.default_rng(seed)
    for _ in range(MAX_TRIES):
        pieces = _course(rng, length_m)
        dirt: list[tuple[float, float, int]] = []
        if rng.random() < 0.3:
            start = float(rng.uniform(0.2, 0.7)) * length_m
            dirt = [(start, start + float(rng.uniform(80.0, 200.0)), DIRT)]
        track = build_track(
            f"gen:{seed}",
            course_points(pieces, every_m=20.0),
            width_m,
            surface_sections=dirt,
            walls=walls,
        )
        radius = 1.0 / np.maximum(track.curvature(), 1e-9)
        if radius.min() > width_m / 2 + 2.0 and not crosses_itself(track):
            return track
    raise RuntimeError(f"no drivable layout found for seed {seed} in {MAX_TRIES} tries")
