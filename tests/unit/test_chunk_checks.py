"""The chunk rules the server and the trainer share (tmrl2.roles.chunk_checks)."""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.roles.chunk_checks import check_chunk_arrays, check_episode, parse_spec, spec_meta


def chunk(n: int = 4) -> dict[str, np.ndarray]:
    return {
        "obs": np.zeros((n, 3), np.float32),
        "next_obs": np.ones((n, 3), np.float32),
        "action": np.zeros((n, 2), np.float32),
        "reward": np.arange(n, dtype=np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }


SPEC = parse_spec(spec_meta({name: (a.shape[1:], a.dtype) for name, a in chunk().items()}))


@pytest.mark.parametrize("spec", [None, SPEC], ids=["no spec", "spec"])
def test_a_good_chunk_passes(spec: object) -> None:
    assert check_chunk_arrays(chunk(), 4, spec) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [None, SPEC], ids=["no spec", "spec"])
@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c.pop("reward"), "reward"),
        (lambda c: c.update(extra=np.zeros(4, np.float32)), "extra"),
        (lambda c: c.update(reward=np.zeros(5, np.float32)), "n=4"),
        (lambda c: c["obs"].__setitem__((1, 2), np.nan), "NaN"),
        (lambda c: c["action"].__setitem__((0, 0), np.inf), "NaN or infinite"),
    ],
)
def test_a_bad_chunk_says_what_is_wrong(spec: object, change: object, says: str) -> None:
    arrays = chunk()
    change(arrays)  # type: ignore[operator]
    why = check_chunk_arrays(arrays, 4, spec)  # type: ignore[arg-type]
    assert why is not None and says in why


def test_the_spec_fixes_dtypes_and_row_shapes() -> None:
    wrong_shape = {**chunk(), "obs": np.zeros((4, 5), np.float32)}
    assert check_chunk_arrays(wrong_shape, 4, None) is None  # a transition, but not this run's
    assert "shape" in str(check_chunk_arrays(wrong_shape, 4, SPEC))
    wrong_dtype = {**chunk(), "reward": np.zeros(4, np.float64)}
    assert "dtype" in str(check_chunk_arrays(wrong_dtype, 4, SPEC))


def test_without_spec_obs_and_next_obs_must_match() -> None:
    arrays = {**chunk(), "obs/speed": np.zeros((4, 1), np.float32)}
    assert "matching obs" in str(check_chunk_arrays(arrays, 4, None))


def test_big_float_arrays_are_checked_whole() -> None:
    arrays = {**chunk(20_000), "obs": np.zeros((20_000, 4), np.float32)}
    arrays["obs"][-1, -1] = np.nan  # beyond the 64k-value fast path
    assert "obs holds NaN" in str(check_chunk_arrays(arrays, 20_000, None))


def test_episode_records_that_cannot_be_true() -> None:
    record = {"return": 1.0, "steps": 10, "finished": True, "lap_time_s": 3.0, "progress_frac": 1}
    assert check_episode(record) is None
    for key, value in [
        ("return", float("nan")),
        ("progress_frac", float("inf")),
        ("progress_frac", 1.5),
        ("lap_time_s", -1.0),
        ("steps", -1),
    ]:
        assert check_episode({**record, key: value}) is not None, key
    assert check_episode("a lap") is not None
