"""Key files: generation (``tmrl2 keys``), loading, and the errors for bad or missing files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq.auth

from tmrl2.cli import main
from tmrl2.net.errors import SecurityError
from tmrl2.net.keys import (
    ClientCurve,
    client_curve,
    generate_keys,
    load_authorized_keys,
    load_key_pair,
    load_public_key,
)


def test_generated_pair_is_readable_by_zmq_and_secret_is_private(tmp_path: Path) -> None:
    public_path, secret_path = generate_keys(tmp_path / "keys", "worker")
    assert public_path == tmp_path / "keys" / "worker.key"
    assert secret_path == tmp_path / "keys" / "worker.key_secret"
    public, secret = load_key_pair(secret_path)
    assert load_public_key(public_path) == public
    assert zmq.auth.load_certificate(secret_path) == (public, secret)
    assert zmq.auth.load_certificate(public_path) == (public, None)
    assert "secret" not in public_path.read_text().split("curve")[1]
    if os.name == "posix":
        assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600


def test_pairs_differ_and_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    generate_keys(tmp_path, "a")
    first = load_public_key(tmp_path / "a.key")
    with pytest.raises(FileExistsError, match="force"):
        generate_keys(tmp_path, "a")
    assert load_public_key(tmp_path / "a.key") == first
    generate_keys(tmp_path, "a", overwrite=True)
    assert load_public_key(tmp_path / "a.key") != first


@pytest.mark.parametrize("name", ["", "../evil", "sub/dir", ".hidden"])
def test_key_name_must_be_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        generate_keys(tmp_path, name)


def test_authorized_keys_from_a_folder_or_a_file(tmp_path: Path) -> None:
    for name in ("w1", "w2"):
        generate_keys(tmp_path, name)
    keys = load_authorized_keys(tmp_path)
    assert keys == {load_public_key(tmp_path / "w1.key"), load_public_key(tmp_path / "w2.key")}
    assert load_authorized_keys(tmp_path / "w1.key") == {load_public_key(tmp_path / "w1.key")}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SecurityError, match="no \\*.key files"):
        load_authorized_keys(empty)


def test_bad_key_files_raise_security_error_naming_the_file(tmp_path: Path) -> None:
    public, _ = generate_keys(tmp_path, "s")
    with pytest.raises(SecurityError, match="not found"):
        load_public_key(tmp_path / "missing.key")
    with pytest.raises(SecurityError, match="no secret key"):
        load_key_pair(public)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello\n")
    with pytest.raises(SecurityError, match="garbage.key"):
        load_public_key(garbage)
    short = tmp_path / "short.key"
    short.write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(SecurityError, match="wrong length"):
        load_public_key(short)


def test_client_keys_need_both_files(tmp_path: Path) -> None:
    server_public, _ = generate_keys(tmp_path, "server")
    _, secret = generate_keys(tmp_path, "worker")
    assert client_curve(None, None) is None
    curve = client_curve(server_public, secret)
    assert isinstance(curve, ClientCurve)
    assert curve.server_public == load_public_key(server_public)
    with pytest.raises(SecurityError, match="both"):
        client_curve(server_public, None)


def test_cli_keys_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "server", "worker", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "server.key",
        "server.key_secret",
        "worker.key",
        "worker.key_secret",
    ]
    assert "worker.key_secret" in capsys.readouterr().out
    assert main(["keys", "server", "--dir", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
