"""The OpenPlanet plugin: compiled with Debian's AngelScript against our stub of the OpenPlanet
API (tests/plugin/), and its protocol constants checked against tmrl2.bridge.protocol."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

from tmrl2.bridge import protocol as p

ROOT = Path(__file__).parents[2]
PLUGIN = ROOT / "tmrl2" / "data" / "plugin"
STUB = ROOT / "tests" / "plugin" / "openplanet_stub.as"
HOST = ROOT / "tests" / "plugin" / "ascheck.cpp"
HEADER = Path("/usr/include/angelscript.h")


@pytest.fixture(scope="module")
def ascheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None or not HEADER.is_file():
        pytest.skip(
            "the plugin compile check needs g++ and Debian's angelscript-dev "
            "(`apt-get install g++ angelscript-dev`; scripts/test.sh installs it when root)"
        )
    exe = tmp_path_factory.mktemp("ascheck") / "ascheck"
    subprocess.run(
        ["g++", "-DAS_USE_NAMESPACE", "-O0", "-o", str(exe), str(HOST), "-langelscript",
         "-langelscript-addon", "-lpthread"],
        check=True, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    return exe


def _compile(exe: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), str(STUB), *map(str, files)], capture_output=True, text=True, timeout=60
    )


def test_plugin_compiles_against_the_stub(ascheck: Path) -> None:
    sources = sorted((PLUGIN / "src").glob("*.as"))
    assert len(sources) >= 4
    result = _compile(ascheck, *sources)
    assert result.returncode == 0, result.stdout
    assert "compile check passed" in result.stdout


def test_a_type_error_fails_the_check(ascheck: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Bad.as"
    bad.write_text('void Broken() {\n    uint16 n = "not a number";\n    Proto::Nope();\n}\n')
    result = _compile(ascheck, *sorted((PLUGIN / "src").glob("*.as")), bad)
    assert result.returncode == 1
    assert "Bad.as:2" in result.stdout and "ERROR" in result.stdout
    assert "Bad.as:3" in result.stdout


def _constants() -> dict[str, int]:
    text = (PLUGIN / "src" / "Protocol.as").read_text()
    pairs = re.findall(r"const\s+\w+\s+(\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\s*;", text)
    return {name: int(value, 0) for name, value in pairs}


def test_plugin_constants_match_the_python_protocol() -> None:
    c = _constants()
    assert (c["MAJOR"], c["MINOR"], c["STATE_SIZE"]) == (p.MAJOR, p.MINOR, p.STATE_SIZE)
    assert c["MAX_PAYLOAD"] == p.MAX_PAYLOAD
    for t in p.MsgType:
        if t.name in c:
            assert c[t.name] == t.value, t.name
    missing = {t.name for t in p.MsgType} - set(c) - {"FRAME"}  # FRAME: simulator only
    assert not missing, missing
    for f in p.StateFlag:
        assert c[f"F_{f.name}"] == f.value, f.name
    for e in p.EventKind:
        assert c[f"EV_{e.name}"] == e.value, e.name
    for s in p.Status:
        assert c[s.name] == s.value, s.name
    for k in p.LandmarkKind:
        assert c[f"LM_{k.name}"] == k.value, k.name
    for surface in p.Surface:
        assert c[f"SURF_{surface.name}"] == surface.value, surface.name
    assert c["KEY_STREAM_EVERY"] == p.ConfigKey.STREAM_EVERY
    assert c["KEY_HEARTBEAT_MS"] == p.ConfigKey.HEARTBEAT_MS
    game_caps = p.Caps.RESPAWN | p.Caps.RESTART | p.Caps.LOAD_MAP | p.Caps.TRACK_INFO
    caps = sum(c[f"CAP_{cap.name}"] for cap in p.Caps if f"CAP_{cap.name}" in c)
    assert caps == int(game_caps | p.Caps.CHECKPOINTS)


def test_state_writer_follows_the_field_order_of_protocol_py() -> None:
    """The STATE writer's sequence of Write calls has the struct layout of protocol.py."""
    text = (PLUGIN / "src" / "Bridge.as").read_text()
    body = text[text.index("void WriteState") :]
    body = body[: body.index("\n    }\n")]
    kinds = {"uint32": "I", "int32": "i", "uint64": "Q", "uint16": "H"}
    layout = ""
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("Proto::Vec("):
            layout += "fff"
        elif m := re.match(r"buf\.Write\((\w+)\(", line):
            layout += kinds[m.group(1)]
        elif re.match(r"buf\.Write\(s\.(yaw|pitch|roll|frontSpeed|sideSpeed|rpm|steer|gas|brake)\)",
                      line):  # fmt: skip
            layout += "f"
        elif re.match(r"buf\.Write\(s\.(gear|wheels)\)", line):
            layout += "B"
        elif "s.surfaces[i]" in line:
            layout += "BBBB"
    assert layout == "IIQiiI" + "f" * 15 + "BB" + "BBBB" + "HHHHH" + "i"


def test_info_toml_declares_the_vehiclestate_dependency() -> None:
    info = tomllib.loads((PLUGIN / "info.toml").read_text())
    assert "VehicleState" in info["script"]["dependencies"]
    assert info["meta"]["version"].startswith(f"{p.MAJOR}.")
