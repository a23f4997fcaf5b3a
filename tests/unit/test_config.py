"""Config loading: defaults, example files, overrides and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from tmrl2.config.load import ConfigError, dump_config, load_config, save_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert CONFIG_FILES, "configs/ must hold example YAML files"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.env.kind and config.algorithm.kind


def test_default_config_is_the_sim_lidar_file() -> None:
    assert dump_config(load_config()) == dump_config(load_config(ROOT / "configs/sim_lidar.yaml"))


def test_defaults_name_the_builtin_components() -> None:
    data = dump_config(load_config())
    assert [data[s]["kind"] for s in ("env", "reward", "memory", "model", "algorithm")] == [
        "sim",
        "terms",
        "ring",
        "mlp",
        "sac",
    ]


def test_overrides_set_values_of_any_type() -> None:
    config = load_config(None, ["run.steps=1234", "trainer.device=cpu", "env.lidar_beams=7"])
    assert config.run.steps == 1234
    assert config.env.lidar_beams == 7  # type: ignore[attr-defined]


def test_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(pydantic.ValidationError):
        config.run.steps = 5  # type: ignore[misc]


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    return str(info.value)


def test_unknown_key_names_the_path_and_the_closest_key() -> None:
    message = _error(["trainer.start_sampels=10"])
    assert "trainer.start_sampels: unknown key" in message
    assert "did you mean 'start_samples'" in message


def test_unknown_key_in_a_component_section() -> None:
    message = _error(["env.lidar_beam=10"])
    assert "env.lidar_beam: unknown key" in message and "'lidar_beams'" in message


def test_unknown_section() -> None:
    assert "trainr: unknown key; did you mean 'trainer'" in _error(["trainr.device=cpu"])


def test_wrong_type_names_the_path_and_the_expected_type() -> None:
    message = _error(["trainer.start_samples=many"])
    assert "trainer.start_samples: expected int, got 'many'" in message


def test_out_of_range_value() -> None:
    assert "worker.chunk_steps" in _error(["worker.chunk_steps=0"])


def test_all_problems_are_reported_together() -> None:
    message = _error(["trainer.start_samples=x", "run.stepz=1"])
    assert "trainer.start_samples" in message and "run.stepz" in message


def test_unknown_component_name_lists_known_ones() -> None:
    message = _error(["algorithm.kind=sca"])
    assert "unknown algorithm 'sca'" in message and "did you mean 'sac'" in message
    assert "Known: redq, sac" in message


def test_bad_import_path_module() -> None:
    message = _error(["env.kind=not_a_module.anywhere:Env"])
    assert "env.kind: cannot import module 'not_a_module.anywhere'" in message


def test_bad_import_path_attribute() -> None:
    message = _error(["env.kind=tmrl2.envs.sim.env:NoSuchEnv"])
    assert "has no attribute 'NoSuchEnv'" in message


def test_import_path_selects_a_component() -> None:
    config = load_config(None, ["env.kind=tmrl2.envs.sim.env:SimEnv"])
    assert type(config.env).__name__ == "SimEnvConfig"


def test_malformed_override() -> None:
    assert "expected 'section.key=value'" in _error(["steps=10"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["run.steps=77", "env.lidar_history=2"])
    save_config(config, tmp_path / "config.yaml")
    assert dump_config(load_config(tmp_path / "config.yaml")) == dump_config(config)


def test_config_hash_covers_shared_sections_only() -> None:
    from tmrl2.config.load import config_hash

    base = config_hash(load_config())
    # per-machine settings may differ between a worker's and the trainer's machine
    assert config_hash(load_config(None, ["worker.name=pc2", "server.port=1234"])) == base
    # what changes observations, rewards or the actor's shape must not
    assert config_hash(load_config(None, ["env.lidar_beams=7"])) != base
    assert config_hash(load_config(None, ["model.hidden_sizes=[64]"])) != base


def test_loading_a_config_imports_no_transport_and_the_limits_agree() -> None:
    """``config`` must not pull pyzmq or the server role in; its message limit is the codec's."""
    import subprocess
    import sys

    code = (
        "import sys, tmrl2.config.load as l; l.load_config(None, []);"
        "print(sorted(m for m in ('zmq', 'tmrl2.roles.server') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    from tmrl2.config.schema import DEFAULT_MAX_MESSAGE_BYTES
    from tmrl2.net.codec import DEFAULT_MAX_BYTES

    assert DEFAULT_MAX_MESSAGE_BYTES == DEFAULT_MAX_BYTES


def test_one_problem_is_one_line() -> None:
    message = _error(["trainer.start_samples=many"])
    assert "\n" not in message and message.startswith("invalid config: trainer.start_samples")


def test_unclosed_bracket_in_an_override_names_it_and_the_fix() -> None:
    message = _error(["model.hidden_sizes=[128,128"])
    assert "override 'model.hidden_sizes=[128,128'" in message and "not valid YAML" in message
    assert "close every bracket" in message and "\n" not in message


def test_untrusted_config_refuses_import_paths_before_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from tmrl2.config import registry

    (tmp_path / "tmrl2_cfg_sideeffect.py").write_text(
        "from pathlib import Path\nPath(__file__).with_suffix('.ran').write_text('x')\n"
        "class Env:\n    def __init__(self, config, reward): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = dump_config(load_config())
    data["env"] = {"kind": "tmrl2_cfg_sideeffect:Env"}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, trust_imports=False)
    assert "env.kind names the import path 'tmrl2_cfg_sideeffect:Env'" in str(info.value)
    assert "--trust-config" in str(info.value)
    assert not (tmp_path / "tmrl2_cfg_sideeffect.ran").exists()
    assert "tmrl2_cfg_sideeffect" not in sys.modules
    with registry.trusted_imports(False), pytest.raises(registry.UntrustedImportError):
        registry.import_path("tmrl2_cfg_sideeffect:Env", "test")
    assert registry.imports_trusted()  # the switch is scoped to the block
    # the same config from the user (trusted, the default) imports it
    assert load_config(data=data).env.kind == "tmrl2_cfg_sideeffect:Env"
    assert (tmp_path / "tmrl2_cfg_sideeffect.ran").exists()
    sys.modules.pop("tmrl2_cfg_sideeffect", None)


def test_untrusted_config_accepts_built_in_and_registered_components() -> None:
    data = dump_config(load_config(None, ["algorithm.kind=redq"]))
    data["env"]["kind"] = "tmrl2.envs.sim.env:SimEnv"  # a registered target, spelled out
    config = load_config(data=data, trust_imports=False)
    assert config.algorithm.kind == "redq" and type(config.env).__name__ == "SimEnvConfig"


def test_vectorized_workers_refuse_what_the_batch_cannot_do_at_load_time() -> None:
    with pytest.raises(ConfigError, match=r"env\.image: true is not supported with worker\.envs"):
        load_config(None, ["worker.envs=4", "env.image=true"])
    assert load_config(None, ["worker.envs=4"]).worker.envs == 4
