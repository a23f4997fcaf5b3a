"""Car physics: engine, brakes, steering, the grip limit, walls."""

from __future__ import annotations

import math

import pytest

from tmrl2.envs.sim.car import Car, CarParams
from tmrl2.envs.sim.track import Track, build_track

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
