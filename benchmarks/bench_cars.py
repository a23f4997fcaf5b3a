"""Car presets side by side: straight-line figures and lap times on the bundled tracks.

    python benchmarks/bench_cars.py [--cars classic tm2020] [--tracks default alpine ...]

For each car: the speeds where the gearbox shifts up, the times from a standing start to 100,
200 and 300 km/h on a level straight, the top speed of the engine law; then, per track, the
reference lap (``reference_lap_time_s``), the autopilot's lap (``drive_lap``), their ratio
(the rule: the autopilot finishes within 115 % of the reference) and the autopilot's top
speed; last, each car's laps against the first car's.
"""

from __future__ import annotations

import argparse

from timing import print_machine  # noqa: E402

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.car import Car, CarParams, car_params
from tmrl2.envs.sim.reference import reference_lap_time_s, top_speed_ms
from tmrl2.envs.sim.track import Track, build_track, load_track

STEP_S = 0.05
KMH = 3.6


def straight_line(params: CarParams) -> tuple[list[float], dict[int, float]]:
    """Upshift speeds (km/h) and the times (s) to 100, 200, 300 km/h from a standing start
    with full gas on a level 20 km straight."""
    road = build_track("flat", [(0.0, 0.0, 0.0), (10_000.0, 0.0, 0.0), (20_000.0, 0.0, 0.0)], 40.0)
    car = Car(road, params)
    car.reset()
    shifts: list[float] = []
    times: dict[int, float] = {}
    gear = car.state.gear
    for step in range(int(60.0 / STEP_S)):
        car.step(1.0, 0.0, 0.0, STEP_S)
        if car.state.gear > gear:
            shifts.append(car.state.speed * KMH)
        gear = car.state.gear
        for mark in (100, 200, 300):
            if mark not in times and car.state.speed * KMH >= mark:
                times[mark] = (step + 1) * STEP_S
    return shifts, times


def autopilot_lap(track: Track, params: CarParams) -> tuple[float | None, float]:
    """The autopilot's lap time (s, None if it does not finish in 300 s) and top speed (m/s)."""
    car, pilot = Car(track, params), Autopilot(track, params)
    car.reset()
    top = 0.0
    for step in range(int(300.0 / STEP_S)):
        before = car.state.s
        gas, brake, steer = (float(v) for v in pilot.act(car.state))
        car.step(gas, brake, steer, STEP_S)
        top = max(top, car.state.speed)
        if car.state.s >= track.length_m:
            frac = (track.length_m - before) / max(car.state.s - before, 1e-9)
            return (step + min(max(frac, 0.0), 1.0)) * STEP_S, top
    return None, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", nargs="+", default=["classic", "tm2020"])
    parser.add_argument(
        "--tracks", nargs="+", default=["default", "alpine", "rally", "ring", "stadium"]
    )
    args = parser.parse_args()
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    laps: dict[str, dict[str, float | None]] = {}
    for name in args.cars:
        params = car_params(name)
        shifts, times = straight_line(params)
        print(
            f"{name}: upshifts at {', '.join(f'{v:.0f}' for v in shifts)} km/h; "
            + ", ".join(f"0-{k} km/h {t:.2f} s" for k, t in times.items())
            + f"; top speed {top_speed_ms(params) * KMH:.0f} km/h"
        )
        laps[name] = {}
        for track_name in args.tracks:
            track = load_track(track_name)
            reference = reference_lap_time_s(track, params)
            lap, top = autopilot_lap(track, params)
            laps[name][track_name] = lap
            ratio = f"{lap / reference:.3f}" if lap is not None else "DNF"
            lap_text = f"{lap:6.2f} s" if lap is not None else "   DNF  "
            print(
                f"  {track_name:8s} reference {reference:6.2f} s  autopilot {lap_text}"
                f"  lap/reference {ratio}  top {top * KMH:4.0f} km/h"
            )
    first = args.cars[0]
    for name in args.cars[1:]:
        for track_name in args.tracks:
            a, b = laps[first][track_name], laps[name][track_name]
            if a is not None and b is not None:
                print(f"{track_name}: {first} / {name} autopilot laps = {a / b:.2f}")


if __name__ == "__main__":
    main()
