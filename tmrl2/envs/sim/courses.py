"""Bundled tracks besides ``default``, laid out as courses of straights and bends.

Each entry of :data:`COURSES` builds one track; :func:`tmrl2.envs.sim.track.load_track` finds
them by name. Track files under ``tmrl2/data/tracks/`` are bundled too.
"""

from __future__ import annotations

from collections.abc import Callable

from tmrl2.envs.sim.track import DIRT, Piece, Track, build_track, course_points


def _alpine() -> Track:
    """About 1.3 km, 12 m wide, climbing 40 m through four hairpins, then a fast descent."""
    course: list[Piece] = [
        (0.0, 120.0, 4.0),
        (-170.0, 50.0, 2.0),  # hairpin left, R 17 m
        (0.0, 140.0, 9.0),
        (175.0, 55.0, 2.0),  # hairpin right, R 18 m
        (0.0, 140.0, 9.0),
        (-175.0, 55.0, 2.0),
        (0.0, 110.0, 7.0),
        (160.0, 50.0, 1.0),
        (0.0, 60.0, 0.0),
        (-50.0, 87.0, -6.0),  # fast left, R 100 m, downhill
        (40.0, 105.0, -8.0),
        (0.0, 200.0, -12.0),  # descent to the finish
    ]
    return build_track("alpine", course_points(course), width_m=12.0)


def _rally() -> Track:
    """About 1.5 km, 13 m wide: a dirt section, chicanes and a crest that makes the car fly."""
    course: list[Piece] = [
        (0.0, 140.0, 0.0),
        (70.0, 98.0, 0.0),  # right, R 80 m
        (0.0, 60.0, 0.0),
        (-45.0, 31.0, 0.0),  # chicane, R 40 m
        (0.0, 10.0, 0.0),
        (45.0, 31.0, 0.0),
        (0.0, 160.0, 0.0),
        (0.0, 30.0, 3.5),  # the crest
        (0.0, 40.0, -5.0),
        (0.0, 120.0, 0.0),
        (-120.0, 63.0, 0.0),  # left, R 30 m, on dirt
        (0.0, 80.0, 0.0),
        (90.0, 110.0, 1.0),  # right, R 70 m, on dirt
        (0.0, 150.0, 0.0),
        (-160.0, 50.0, 0.0),  # hairpin left
        (0.0, 100.0, 0.0),
        (30.0, 100.0, 0.0),
        (0.0, 120.0, 0.0),
    ]
    dirt = [(700.0, 1000.0, DIRT)]
    return build_track(
        "rally", course_points(course, every_m=20.0), width_m=13.0, surface_sections=dirt
    )


def _ring() -> Track:
    """About 1.1 km, 16 m wide, open borders (grass, no walls): sweeping bends, one chicane."""
    course: list[Piece] = [
        (0.0, 200.0, 0.0),
        (60.0, 157.0, 0.0),  # sweeper, R 150 m
        (0.0, 80.0, 0.0),
        (-40.0, 42.0, 0.0),  # chicane, R 60 m
        (40.0, 42.0, 0.0),
        (0.0, 150.0, 0.0),
        (100.0, 105.0, 0.0),  # right, R 60 m
        (0.0, 120.0, 0.0),
        (-30.0, 157.0, 0.0),  # fast left, R 300 m
        (0.0, 100.0, 0.0),
    ]
    return build_track("ring", course_points(course), width_m=16.0, walls=False)


COURSES: dict[str, Callable[[], Track]] = {"alpine": _alpine, "rally": _rally, "ring": _ring}
