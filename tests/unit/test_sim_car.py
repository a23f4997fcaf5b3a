"""Car physics: engine, brakes, steering, the grip limit, walls."""

from __future__ import annotations

import math

import pytest

from tmrl2.envs.sim.car import Car, CarParams
from tmrl2.envs.sim.track import (
    DIRT,
    GRASS,
    OPEN_BORDER_M,
    ROAD,
    Piece,
    Track,
    build_track,
    course_points,
    load_track,
)

DT_S = 0.05


def straight(width_m: float) -> Track:
    """A straight road along +x, 1 km long."""
    return build_track(
        "straight", [(0.0, 0.0, 0.0), (500.0, 0.0, 0.0), (1000.0, 0.0, 0.0)], width_m
    )


def drive(car: Car, gas: float, brake: float, steer: float, seconds: float) -> bool:
    contact = False
    for _ in range(round(seconds / DT_S)):
        contact = car.step(gas, brake, steer, DT_S) or contact
    return contact


def rolling_car(speed_ms: float, width_m: float = 400.0) -> Car:
    """A car on the centerline of a straight road, already moving at ``speed_ms``."""
    car = Car(straight(width_m))
    car.reset(s=20.0)
    car.state.vx = speed_ms
    return car


def test_gas_accelerates_towards_a_top_speed() -> None:
    car = Car(straight(14.0))
    car.reset()
    drive(car, 1.0, 0.0, 0.0, 2.0)
    assert 20.0 < car.state.speed < 35.0  # about 0-100 km/h in 2 s
    assert car.state.s == pytest.approx(car.state.x)
    assert abs(car.state.offset) < 1e-9
    fast = rolling_car(90.0)
    drive(fast, 1.0, 0.0, 0.0, 2.0)
    assert 70.0 < fast.state.speed < 90.0  # drag beats the engine above top speed


def test_brake_stops_the_car_without_reversing() -> None:
    car = rolling_car(30.0)
    drive(car, 0.0, 1.0, 0.0, 1.0)
    assert 10.0 < car.state.speed < 18.0  # 15 m/s^2 plus drag
    drive(car, 0.0, 1.0, 0.0, 2.0)
    assert car.state.speed == 0.0
    x = car.state.x
    drive(car, 0.0, 1.0, 0.0, 1.0)
    assert car.state.x == x


def test_positive_steer_turns_right() -> None:
    car = rolling_car(15.0)
    drive(car, 0.3, 0.0, 0.5, 1.0)
    assert car.state.heading > 0.2  # heading grows turning right
    assert car.state.offset < -1.0  # right of the centerline
    left = rolling_car(15.0)
    drive(left, 0.3, 0.0, -0.5, 1.0)
    assert left.state.heading == pytest.approx(-car.state.heading)


def test_gentle_corner_keeps_grip() -> None:
    car = rolling_car(20.0)
    drive(car, 0.2, 0.0, 0.1, 1.0)
    assert abs(car.state.side_speed) < 1e-6  # velocity follows the heading


def test_exceeding_grip_slides_and_loses_speed() -> None:
    params = CarParams()
    turning, straight_on = rolling_car(60.0), rolling_car(60.0)
    drive(turning, 1.0, 0.0, 1.0, 1.0)
    drive(straight_on, 1.0, 0.0, 0.0, 1.0)
    slip = math.atan2(turning.state.side_speed, turning.state.forward_speed)
    assert math.degrees(slip) < -5.0  # the velocity lags the heading (to its left)
    assert turning.state.speed < straight_on.state.speed - 5.0
    # The velocity itself turns no faster than the grip allows: at most grip / speed rad/s,
    # and the speed stayed above 50 m/s for this 1 s.
    course = math.atan2(turning.state.vz, turning.state.vx)
    assert 0.0 < course <= params.grip_ms2 / 50.0 * 1.0


def test_wall_contact_keeps_the_car_on_the_road_and_slows_it() -> None:
    car = rolling_car(30.0, width_m=14.0)
    limit = 7.0 - car.params.half_width_m
    contacts = []
    for _ in range(40):
        contacts.append(car.step(1.0, 0.0, 0.6, DT_S))
        assert abs(car.state.offset) <= limit + 1e-9
    assert any(contacts)
    first = contacts.index(True)
    assert car.state.offset == pytest.approx(-limit)  # pressed against the right wall
    free = rolling_car(30.0)
    for _ in range(first + 1):
        free.step(1.0, 0.0, 0.6, DT_S)
    assert car.state.speed < free.state.speed


def test_start_wall_stops_a_car_backing_out() -> None:
    car = Car(straight(14.0))
    car.reset(s=2.0)
    car.state.heading = math.pi  # facing the start wall
    car.state.vx = -10.0
    assert drive(car, 0.0, 0.0, 0.0, 0.5)
    assert car.state.s >= 0.0 and car.state.x >= -1e-9


def test_gearbox_shifts_up_with_speed_and_keeps_rpm_under_the_red_line() -> None:
    car = Car(straight(14.0))
    car.reset()
    gears, rpms = [], []
    for _ in range(round(12.0 / DT_S)):
        car.step(1.0, 0.0, 0.0, DT_S)
        gears.append(car.state.gear)
        rpms.append(car.state.rpm)
    assert gears == sorted(gears) and gears[0] == 1 and gears[-1] >= 5
    params = car.params
    assert max(rpms) <= params.redline_rpm and min(rpms) >= params.idle_rpm
    # Right after an upshift the rpm drops.
    shift = gears.index(2)
    assert rpms[shift] < rpms[shift - 1]
    drive(car, 0.0, 1.0, 0.0, 6.0)  # braking to a stop shifts back down
    assert car.state.gear == 1 and car.state.rpm == params.idle_rpm


def test_dirt_and_grass_have_less_grip_and_more_resistance() -> None:
    def top_speed_and_course(surface: int) -> tuple[float, float]:
        track = build_track(
            "s", [(0.0, 0.0, 0.0), (500.0, 0.0, 0.0), (1000.0, 0.0, 0.0)], 400.0,
            surface_sections=[(0.0, 2000.0, surface)],
        )  # fmt: skip
        car = Car(track)
        car.reset(s=20.0)
        drive(car, 1.0, 0.0, 0.0, 10.0)
        top = car.state.speed
        turning = Car(track)
        turning.reset(s=20.0)
        turning.state.vx = 30.0
        drive(turning, 0.0, 0.0, 1.0, 0.5)
        return top, math.atan2(turning.state.vz, turning.state.vx)

    road, dirt, grass = (top_speed_and_course(code) for code in (ROAD, DIRT, GRASS))
    assert road[0] > dirt[0] > grass[0]
    assert road[1] > dirt[1] > grass[1] > 0.0  # less grip: the velocity turns less


def test_open_borders_let_the_car_onto_grass_until_the_outer_wall() -> None:
    track = build_track(
        "open", [(0.0, 0.0, 0.0), (500.0, 0.0, 0.0), (1000.0, 0.0, 0.0)], 14.0, walls=False
    )
    car = Car(track)
    car.reset(s=20.0)
    car.state.vx = 20.0
    surfaces = set()
    contact = False
    for _ in range(60):
        contact = car.step(0.5, 0.0, 0.4, DT_S) or contact
        surfaces.add(car.state.surface)
    assert GRASS in surfaces
    assert abs(car.state.offset) <= 7.0 + OPEN_BORDER_M - car.params.half_width_m + 1e-9
    assert abs(car.state.offset) > 7.0 and contact  # reached the outer wall on the grass


def crest_track() -> Track:
    """A level road with a crest: 3 m up over 30 m, then 5 m down over 40 m."""
    pieces: list[Piece] = [
        (0.0, 300.0, 0.0),
        (0.0, 30.0, 3.0),
        (0.0, 40.0, -5.0),
        (0.0, 300.0, 0.0),
    ]
    return build_track("crest", course_points(pieces, every_m=20.0), 14.0)


def test_a_crest_at_speed_throws_the_car_into_the_air_without_steering() -> None:
    track = crest_track()
    fast, slow = Car(track), Car(track)
    for car, speed in ((fast, 50.0), (slow, 8.0)):
        car.reset(s=250.0)
        car.state.vx = speed
    heading_in_air = None
    for _ in range(round(8.0 / DT_S)):
        fast.step(0.0, 0.0, 1.0 if fast.state.airborne else 0.0, DT_S)
        if fast.state.airborne and heading_in_air is None:
            heading_in_air = fast.state.heading
        if fast.state.airborne:
            assert fast.state.heading == heading_in_air  # full lock does nothing in the air
            assert fast.state.y > track.height(fast.state.seg, fast.state.s)
    for _ in range(round(20.0 / DT_S)):
        slow.step(1.0 if slow.state.speed < 8.0 else 0.0, 0.0, 0.0, DT_S)
    assert fast.state.air_time_s > 0.3
    assert slow.state.air_time_s == 0.0 and slow.state.s > 400.0  # slowly over the crest
    assert not fast.state.airborne  # landed


def test_default_track_has_no_jumps_for_the_autopilot() -> None:
    from tmrl2.envs.sim.autopilot import Autopilot

    track = load_track("default")
    car, pilot = Car(track), Autopilot(track)
    car.reset()
    while car.state.s < track.length_m:
        car.step(*(float(v) for v in pilot.act(car.state)), DT_S)
        road = track.height(car.state.seg, car.state.s)
        assert road <= car.state.y < road + car.params.contact_m
    assert car.state.air_time_s == 0.0


def test_each_wheel_reports_the_surface_under_it() -> None:
    """Open borders: a car straddling the right border has its right wheels on the grass and
    its left wheels on the road; turned across the road, front and rear wheels differ."""
    road = build_track(
        "open", [(0.0, 0.0, 0.0), (500.0, 0.0, 0.0), (1000.0, 0.0, 0.0)], 12.0, walls=False
    )
    car = Car(road)
    car.reset(s=100.0, offset=-6.0)  # the centre on the right border (half width 6 m)
    assert car.wheel_surfaces() == (ROAD, GRASS, ROAD, GRASS)
    car.reset(s=100.0, offset=0.0)
    assert car.wheel_surfaces() == (ROAD,) * 4
    # facing the left border, 5 m left of the centre: front wheels past it, rear ones not
    car.reset(s=100.0, offset=5.0, heading_offset=-math.pi / 2)
    assert car.wheel_surfaces() == (GRASS, GRASS, ROAD, ROAD)


# ---------------------------------------------------------------- presets
KMH = 3.6


def long_straight() -> Track:
    """A level straight 20 km long, 40 m wide."""
    return build_track("flat", [(0.0, 0.0, 0.0), (10_000.0, 0.0, 0.0), (20_000.0, 0.0, 0.0)], 40.0)


def test_classic_preset_is_the_first_car() -> None:
    from tmrl2.envs.sim.car import CAR_PRESETS, car_params
    from tmrl2.envs.sim.reference import top_speed_ms

    assert car_params("classic") == CarParams() == CAR_PRESETS["classic"]
    assert CarParams().engine_curve == ()  # the linear engine law
    assert top_speed_ms(CarParams()) * KMH == pytest.approx(306.0, abs=1.0)
    assert CarParams().grip_ms2 == 13.7


def test_unknown_car_and_bad_params_raise_one_line_errors() -> None:
    from tmrl2.envs.sim.car import car_params

    with pytest.raises(ValueError, match="unknown car 'f1'; known cars: classic, tm2020"):
        car_params("f1")
    with pytest.raises(ValueError, match="engine_curve"):
        CarParams(engine_curve=((0.0, 1.0), (0.0, 0.5)))
    with pytest.raises(ValueError, match="engine_curve"):
        CarParams(engine_curve=((0.0, 1.0, 2.0),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gear_top_ms"):
        CarParams(gear_top_ms=(20.0, 10.0))


def test_tm2020_shifts_up_at_the_game_s_speeds() -> None:
    """Gear changes near 102, 162, 235 and 342 km/h (trackmania.wiki, "Gears")."""
    from tmrl2.envs.sim.car import car_params

    car = Car(long_straight(), car_params("tm2020"))
    car.reset()
    shifts, gear = [], 1
    for _ in range(round(25.0 / 0.01)):
        car.step(1.0, 0.0, 0.0, 0.01)
        if car.state.gear > gear:
            shifts.append(car.state.speed * KMH)
        gear = car.state.gear
    assert shifts == pytest.approx([102.0, 162.0, 235.0, 342.0], abs=1.0)
    assert gear == 5


def test_tm2020_accelerates_by_speed_band_and_tops_out_near_900_kmh() -> None:
    """Engine 16, 11, 7, 5.5 m/s^2 below 100, 200, 400, 800 km/h (TM-AlgoCrack); the kernels,
    the reference's envelope and the top speed follow the same law."""
    from tmrl2.envs.sim.car import car_params, engine_envelope_ms2
    from tmrl2.envs.sim.reference import top_speed_ms

    params = car_params("tm2020")
    for kmh, engine in ((50, 16.0), (150, 11.0), (300, 7.0), (600, 5.5), (850, 1.0)):
        assert float(engine_envelope_ms2(params, kmh / KMH)) == pytest.approx(engine)
        car = Car(long_straight(), params)
        car.reset(s=100.0)
        car.state.vx = kmh / KMH
        car.state.gear = 1 + sum(kmh > g * KMH for g in params.gear_top_ms[:-1])
        car.step(1.0, 0.0, 0.0, 0.2)
        u = kmh / KMH
        expected = engine - params.rolling_ms2 - params.drag_per_m * u * u
        assert (car.state.speed - u) / 0.2 == pytest.approx(expected, abs=0.05 * engine)
    assert top_speed_ms(params) * KMH == pytest.approx(900.0, abs=5.0)
    # on a level road full gas holds the top speed: faster slows down, slower speeds up
    for kmh, sign in ((880, 1.0), (920, -1.0)):
        car = Car(long_straight(), params)
        car.reset(s=100.0)
        car.state.vx, car.state.gear = kmh / KMH, 5
        car.step(1.0, 0.0, 0.0, 1.0)
        assert sign * (car.state.speed - kmh / KMH) > 0.0


def test_tm2020_grips_and_brakes_harder_and_laps_default_faster() -> None:
    from tmrl2.envs.sim.autopilot import drive_lap
    from tmrl2.envs.sim.car import car_params
    from tmrl2.envs.sim.reference import reference_lap_time_s

    params = car_params("tm2020")
    assert params.grip_ms2 > 5.0 * CarParams().grip_ms2
    car = Car(long_straight(), params)
    car.reset(s=100.0)
    car.state.vx, car.state.gear = 50.0, 3
    car.step(0.0, 1.0, 0.0, 0.5)
    assert 50.0 - car.state.speed == pytest.approx(0.5 * 30.0, abs=1.0)  # brakes 30 m/s^2
    track = load_track("default")
    reference = reference_lap_time_s(track, params)
    lap = drive_lap(track, params)
    assert lap is not None and lap < 1.15 * reference
    assert lap < 0.7 * drive_lap(track)  # type: ignore[operator]


@pytest.mark.parametrize("name", ["default", "alpine", "rally", "ring", "stadium"])
def test_tm2020_autopilot_finishes_each_bundled_track_within_115_percent(name: str) -> None:
    from tmrl2.envs.sim.autopilot import drive_lap
    from tmrl2.envs.sim.car import car_params
    from tmrl2.envs.sim.reference import reference_lap_time_s

    track, params = load_track(name), car_params("tm2020")
    lap = drive_lap(track, params)
    assert lap is not None and lap <= 1.15 * reference_lap_time_s(track, params)
