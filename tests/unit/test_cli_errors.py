"""The CLI's errors a user can fix: exit code 2 and one line on stderr, never a traceback; and
checkpoints that never import the code their config names unless trusted (issue 14)."""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tmrl2.cli import main
from tmrl2.config.load import dump_config, load_config, save_config

pytestmark = pytest.mark.timeout(60)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI; assert it failed with code 2 and one ``tmrl2: ...`` line; return it."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tmrl2: "), err
    return lines[0]


def test_unclosed_bracket_in_set_is_one_line_naming_the_override(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _one_line_error(capsys, ["config", "--set", "model.hidden_sizes=[128,128"])
    assert "model.hidden_sizes=[128,128" in line and "not valid YAML" in line
    assert "close every bracket" in line


def test_unknown_track_fails_at_config_time_naming_the_key_and_known_tracks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _one_line_error(capsys, ["config", "--set", "env.track=nosuch"])
    assert "env.track" in line and "nosuch" in line
    assert "default" in line and "ring" in line  # the known tracks


def test_record_reference_of_an_unknown_track_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _one_line_error(
        capsys, ["record-reference", str(tmp_path / "ref.npy"), "--track", "nosuchtrack"]
    )
    assert "nosuchtrack" in line and "default" in line
    assert not (tmp_path / "ref.npy").exists()


def test_server_on_a_busy_port_names_the_port_and_the_way_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _one_line_error(
            capsys, ["server", "--set", "server.host=127.0.0.1", "--set", f"server.port={port}"]
        )
    assert f"127.0.0.1:{port}" in line and "server.port=0" in line


def test_eval_of_a_corrupt_checkpoint_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn by a kill")
    line = _one_line_error(capsys, ["eval", str(tmp_path)])
    assert "not a readable checkpoint" in line


def test_resume_from_a_corrupt_checkpoint_is_one_line_before_any_role_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmrl2.roles.launcher as launcher

    def never(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("roles started from a corrupt checkpoint")

    monkeypatch.setattr(launcher, "run_local_training", never)
    save_config(load_config(), tmp_path / "config.yaml")
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 64)
    line = _one_line_error(capsys, ["train", "--resume", str(tmp_path)])
    assert "checkpoint.pt" in line and "not a readable checkpoint" in line


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ({"samples": 0, "exit_codes": {"server": 0, "trainer": 0, "worker-0": 0}}, "no sample"),
        ({"samples": None, "exit_codes": {}}, "no sample"),
        ({"samples": 500, "exit_codes": {"trainer": 1, "worker-0": 0}}, "trainer (exit code 1)"),
        (
            {"samples": 10, "exit_codes": {"trainer": 0}, "failure": "no new sample for 60 s"},
            "no new sample for 60 s",
        ),
    ],
)
def test_train_exits_non_zero_when_no_sample_arrived_or_a_role_failed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    summary: dict[str, Any],
    reason: str,
) -> None:
    import tmrl2.roles.launcher as launcher

    monkeypatch.setattr(launcher, "run_local_training", lambda *a, **k: dict(summary))
    assert main(["train", "--steps", "10"]) == 1
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err


def test_train_exits_zero_when_samples_arrived_and_every_role_ended_well(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tmrl2.roles.launcher as launcher

    done = {"samples": 1000, "exit_codes": {"server": 0, "trainer": 0, "worker-0": 0}}
    monkeypatch.setattr(launcher, "run_local_training", lambda *a, **k: dict(done))
    assert main(["train", "--steps", "10"]) == 0
    assert "tmrl2:" not in capsys.readouterr().err


# ------------------------------------------------------------ untrusted checkpoints


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A module that leaves a marker file when imported, and defines a reward function."""
    name = f"tmrl2_test_evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def term(info):\n"
        "    return 0.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def _checkpoint_naming(tmp_path: Path, kind: str | None) -> Path:
    """A loadable checkpoint (default model's actor) whose config names ``kind`` as a custom
    reward term (none: only built-ins), written without importing it."""
    import torch

    from tmrl2.checkpoint import save_checkpoint
    from tmrl2.envs.factory import build_env
    from tmrl2.roles.components import build_model

    config = load_config()
    env = build_env(config)
    model = build_model(config, env.observation_space, env.action_space)
    env.close()
    data = dump_config(config)
    data["reward"]["custom"] = [{"kind": kind, "weight": 0.0}] if kind else []
    path = tmp_path / "shared" / "checkpoint.pt"
    save_checkpoint(path, {"actor": model.actor.state_dict(), "config": data})
    assert isinstance(torch.load(path, weights_only=True), dict)
    return path


def test_eval_refuses_a_checkpoint_naming_code_and_imports_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, evil_module: tuple[str, Path]
) -> None:
    name, marker = evil_module
    path = _checkpoint_naming(tmp_path, f"{name}:term")
    line = _one_line_error(capsys, ["eval", str(path)])
    assert "reward.custom" in line and f"'{name}:term'" in line and "--trust-config" in line
    assert not marker.exists() and name not in sys.modules


def test_load_policy_refuses_untrusted_import_paths_by_default(
    tmp_path: Path, evil_module: tuple[str, Path]
) -> None:
    from tmrl2.config.load import ConfigError
    from tmrl2.roles.evaluate import load_policy

    name, marker = evil_module
    path = _checkpoint_naming(tmp_path, f"{name}:term")
    with pytest.raises(ConfigError, match="--trust-config"):
        load_policy(path)
    assert not marker.exists() and name not in sys.modules


def test_trust_config_imports_what_the_checkpoint_names(
    tmp_path: Path, evil_module: tuple[str, Path]
) -> None:
    from tmrl2.roles.evaluate import load_policy

    name, marker = evil_module
    path = _checkpoint_naming(tmp_path, f"{name}:term")
    config, actor = load_policy(path, trust_config=True)
    assert marker.read_text() == "imported"
    assert config.reward.custom[0].kind == f"{name}:term"  # type: ignore[attr-defined]
    assert not actor.training


def test_a_checkpoint_naming_os_system_as_its_env_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tmrl2.checkpoint import save_checkpoint

    data = dump_config(load_config())
    data["env"] = {"kind": "os:system"}
    save_checkpoint(tmp_path / "checkpoint.pt", {"actor": {}, "config": data})
    line = _one_line_error(capsys, ["eval", str(tmp_path)])
    assert "env.kind" in line and "'os:system'" in line and "--trust-config" in line


def test_built_in_components_load_from_an_untrusted_checkpoint(tmp_path: Path) -> None:
    from tmrl2.config import registry
    from tmrl2.roles.evaluate import load_policy

    config, _ = load_policy(_checkpoint_naming(tmp_path, None))
    assert config.env.kind == "sim"
    with registry.trusted_imports(False):  # a registered target spelled as its import path
        assert registry.resolve("env", "tmrl2.envs.sim.env:SimEnv").__name__ == "SimEnv"


def test_server_serves_with_the_live_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import tmrl2.roles.common as common
    import tmrl2.roles.server_live as server_live

    class StopAtOnce:
        def is_set(self) -> bool:
            return True

    calls: list[int] = []

    def spy(server: Any, stop: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(server.port)

    monkeypatch.setattr(common, "NeverStop", StopAtOnce)
    monkeypatch.setattr(server_live, "run_with_status", spy)
    assert main(["server", "--set", "server.host=127.0.0.1", "--set", "server.port=0"]) == 0
    assert len(calls) == 1 and calls[0] > 0
