"""Images: the perspective renderer, the image observation, domain randomization, preview."""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.envs.sim.env import DomainRandomization, SimEnv, SimEnvConfig
from tmrl2.envs.sim.render import GRAY, ROAD_C, SKY_C, Renderer
from tmrl2.envs.sim.track import build_track

GAS = np.array([1.0, 0.0, 0.0], np.float32)


def test_view_down_a_straight_shows_sky_above_and_road_ahead() -> None:
    track = build_track("s", [(0.0, 0.0, 0.0), (200.0, 0.0, 0.0), (400.0, 0.0, 0.0)], 14.0)
    image = Renderer(track).render(50.0, 0.0, 0.0)
    assert image.shape == (64, 64) and image.dtype == np.uint8
    assert np.all(image[0] == GRAY[SKY_C])  # top row: sky
    assert np.all(image[-1, 24:40] == GRAY[ROAD_C])  # bottom centre: road
    # Centred on a straight: symmetric (to a texel of the texture).
    assert np.count_nonzero(image != image[:, ::-1]) < 0.02 * image.size
    # Moving right on the road shifts the road left in the picture.
    shifted = Renderer(track).render(50.0, 3.0, 0.0)
    for row in (30, 35):
        assert 0 < np.count_nonzero(image[row] == GRAY[ROAD_C]) < 64  # both borders in view
        road = shifted[row] == GRAY[ROAD_C]
        assert np.flatnonzero(road).mean() < np.flatnonzero(image[row] == GRAY[ROAD_C]).mean()
    colour = Renderer(track, 32, 16, color=True).render(50.0, 0.0, 0.0)
    assert colour.shape == (16, 32, 3)


def test_image_observation_has_history_and_is_deterministic_for_a_seed() -> None:
    config = SimEnvConfig(image=True, image_history=3, image_width=48, image_height=32)

    def frames(seed: int) -> list[np.ndarray]:
        env = SimEnv(config)
        obs, _ = env.reset(seed=seed)
        out = [obs["image"]]
        for _ in range(20):
            out.append(env.step(GAS)[0]["image"])
        assert env.observation_space.contains(obs)
        return out

    first, again = frames(0), frames(0)
    assert first[0].shape == (3, 32, 48)
    np.testing.assert_array_equal(first[0][0], first[0][-1])  # history filled at reset
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[-1][1], first[-2][2])  # newest last, shifted
    assert not np.array_equal(first[-1][-1], first[0][-1])  # the view moves


def test_default_config_has_no_image_and_the_same_keys() -> None:
    assert set(SimEnv().observation_space.spaces) == {"lidar", "speed", "prev_actions"}


def test_randomization_is_off_by_default_and_seeded_when_on() -> None:
    plain = SimEnv()
    plain.reset(seed=0)
    assert plain.car.params == SimEnv().car.params
    knobs = DomainRandomization(
        grip_frac=0.2, mass_frac=0.1, engine_frac=0.1, brightness=0.1,
        contrast_frac=0.2, noise_std=0.02, camera_height_m=0.5, camera_pitch_deg=3.0,
    )  # fmt: skip
    config = SimEnvConfig(image=True, image_history=1, randomization=knobs)

    def episode(seed: int) -> tuple[float, np.ndarray]:
        env = SimEnv(config)
        obs, _ = env.reset(seed=seed)
        return env.car.params.grip_ms2, obs["image"]

    (grip_a, image_a), (grip_b, image_b), (grip_c, image_c) = episode(1), episode(1), episode(2)
    assert grip_a == grip_b and np.array_equal(image_a, image_b)
    assert grip_a != grip_c and not np.array_equal(image_a, image_c)
    assert grip_a == pytest.approx(plain.car.params.grip_ms2, rel=0.2)


def test_preview_points_lie_ahead_in_the_car_frame() -> None:
    env = SimEnv(SimEnvConfig(preview_points=5, preview_spacing_m=10.0))
    obs, _ = env.reset(seed=0)
    preview = obs["preview"]
    assert preview.shape == (5, 2) and env.observation_space.contains(obs)
    # The default track starts straight: points 10, 20, ... m straight ahead.
    np.testing.assert_allclose(preview[:, 0], np.arange(1, 6) * 0.1, atol=0.01)
    np.testing.assert_allclose(preview[:, 1], 0.0, atol=0.01)


def _overpass(rise_m: float):  # type: ignore[no-untyped-def]
    """A straight along +x, a 270-degree right turn climbing ``rise_m``, and a straight that
    crosses the first one near x = 160."""
    from tmrl2.envs.sim.track import build_track, course_points

    course = [(0.0, 200.0, 0.0), (270.0, 40.0 * 1.5 * np.pi, rise_m), (0.0, 100.0, 0.0)]
    return build_track("overpass", course_points(course, every_m=10.0), width_m=12.0)


def test_a_bridge_is_two_levels_not_a_flat_junction() -> None:
    from tmrl2.envs.sim.render import BORDER_C, ROAD_C, Renderer, TrackTexture

    bridge, flat = TrackTexture(_overpass(10.0)), TrackTexture(_overpass(0.0))
    assert flat.upper is None and bridge.upper is not None
    crossing = np.column_stack([np.linspace(145.0, 175.0, 61), np.zeros(61)])
    ix, iz = bridge.index(crossing[:, 0], crossing[:, 1])
    # along the lower road, the lower level is road all the way: no border of the bridge
    assert np.all(bridge.classes[iz, ix] == ROAD_C)
    assert np.any(flat.classes[iz, ix] == BORDER_C)  # flat: the junction's borders
    # the upper level shows the bridge's borders where it crosses the lower road
    assert np.any(bridge.upper[iz, ix] == BORDER_C)
    # the camera: a car below sees the lower level, a car on the bridge the upper one
    renderer = Renderer(_overpass(10.0), 48, 48)
    below = renderer.render(140.0, 0.0, 0.0, y=0.0)
    above = renderer.render(140.0, 0.0, 0.0, y=10.0)
    assert not np.array_equal(below, above)
