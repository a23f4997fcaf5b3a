"""``tmrl2 plugin install`` into folder trees that mimic Windows, Proton and Wine layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmrl2.cli import main
from tmrl2.envs.trackmania.install import (
    PLUGIN_FOLDER,
    InstallError,
    find_plugin_dirs,
    install,
)

PROTON = "steamapps/compatdata/2225070/pfx/drive_c/users/steamuser/OpenplanetNext"


def _installed(plugins: Path) -> set[str]:
    return {p.relative_to(plugins / PLUGIN_FOLDER).as_posix() for p in
            (plugins / PLUGIN_FOLDER).rglob("*") if p.is_file()}  # fmt: skip


def test_windows_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "OpenplanetNext" / "Plugins").mkdir(parents=True)
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    (done,) = install(home=tmp_path, platform="win32")
    assert done.target == tmp_path / "OpenplanetNext" / "Plugins" / PLUGIN_FOLDER
    files = _installed(tmp_path / "OpenplanetNext" / "Plugins")
    assert "info.toml" in files and "src/Main.as" in files and "src/Bridge.as" in files


def test_proton_prefix_and_replacing_an_old_copy(tmp_path: Path) -> None:
    root = tmp_path / ".local/share/Steam" / PROTON
    old = root / "Plugins" / PLUGIN_FOLDER
    old.mkdir(parents=True)
    (old / "stale.as").write_text("// from an older version")
    (done,) = install(home=tmp_path, platform="linux")
    assert done.replaced and done.target == old
    assert "stale.as" not in _installed(root / "Plugins")
    assert "src/Protocol.as" in _installed(root / "Plugins")


def test_wine_prefix_gets_a_plugins_folder(tmp_path: Path) -> None:
    (tmp_path / "Games/trackmania/drive_c/users/me/OpenplanetNext").mkdir(parents=True)
    (found,) = find_plugin_dirs(tmp_path, "linux")
    assert found.name == "Plugins" and not found.exists()
    install(home=tmp_path, platform="linux")
    assert (found / PLUGIN_FOLDER / "info.toml").is_file()


def test_symlinked_steam_roots_install_once(tmp_path: Path) -> None:
    (tmp_path / ".local/share/Steam" / PROTON).mkdir(parents=True)
    (tmp_path / ".steam").mkdir()
    (tmp_path / ".steam" / "steam").symlink_to(tmp_path / ".local/share/Steam")
    assert len(install(home=tmp_path, platform="linux")) == 1


def test_nothing_found_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="compatdata") as err:
        install(home=tmp_path, platform="linux")
    assert "--path" in str(err.value)


def test_cli_path_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugins = tmp_path / "OpenplanetNext" / "Plugins"
    plugins.mkdir(parents=True)
    assert main(["plugin", "install", "--path", str(tmp_path / "OpenplanetNext"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would install: {plugins / PLUGIN_FOLDER}" in out
    assert "Signature Mode > Developer" in out  # the one manual step, spelled out
    assert not (plugins / PLUGIN_FOLDER).exists()
    assert main(["plugin", "install", "--path", str(plugins)]) == 0
    assert (plugins / PLUGIN_FOLDER / "info.toml").is_file()
    assert main(["plugin", "install", "--path", str(tmp_path / "missing")]) == 2
