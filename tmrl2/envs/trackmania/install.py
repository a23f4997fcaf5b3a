"""``tmrl2 plugin install``: copy the EVO RL plugin into OpenPlanet's plugin folder.

OpenPlanet loads plugins from ``OpenplanetNext/Plugins`` in the user's home: on Windows
``%USERPROFILE%\\OpenplanetNext\\Plugins``; under Proton (Steam on Linux) inside the game's
prefix, ``.../steamapps/compatdata/<appid>/pfx/drive_c/users/steamuser/OpenplanetNext/Plugins``;
under Wine or Lutris inside their prefixes. The plugin ships inside this package
(``tmrl2/data/plugin``), so the command works from any install.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tmrl2.bridge.errors import BridgeError

PLUGIN_SOURCE = Path(__file__).parents[2] / "data" / "plugin"
PLUGIN_FOLDER = "EVORL-bridge"
"""Folder name inside ``Plugins`` (an older copy there is replaced)."""
TRACKMANIA_STEAM_APPID = "2225070"
MANUAL_STEP = (
    "One step is left, in the game: OpenPlanet loads unsigned plugins only in Developer "
    "signature mode, which needs the game's Club access. Press F3 to open the OpenPlanet "
    "overlay, then Developer > Signature Mode > Developer, and Developer > Reload plugin > "
    "EVO RL bridge (or restart the game). The plugin needs OpenPlanet's VehicleState plugin; "
    "if OpenPlanet says it is missing, install it from OpenPlanet's Plugin Manager. Then run "
    "`tmrl2 check-environment`."
)


class InstallError(BridgeError):
    """No plugin folder found, or the copy failed; the message lists where we looked."""


@dataclass(frozen=True)
class Installed:
    target: Path
    replaced: bool


def candidate_roots(home: Path, platform: str = sys.platform) -> list[Path]:
    """``OpenplanetNext`` folders that may exist for this user, most likely first."""
    if platform == "win32":
        profile = Path(os.environ.get("USERPROFILE", home))
        return [profile / "OpenplanetNext"]
    steam_roots = [
        home / ".steam" / "steam",
        home / ".steam" / "root",
        home / ".local" / "share" / "Steam",
        home / ".var" / "app" / "com.valvesoftware.Steam" / ".local" / "share" / "Steam",
    ]
    roots: list[Path] = []
    for steam in steam_roots:
        compat = steam / "steamapps" / "compatdata"
        user = Path("pfx") / "drive_c" / "users" / "steamuser" / "OpenplanetNext"
        roots.append(compat / TRACKMANIA_STEAM_APPID / user)
        roots.extend(sorted(compat.glob(f"*/{user.as_posix()}")))
    for prefix in [home / ".wine", *sorted((home / "Games").glob("*"))]:
        roots.extend(sorted(prefix.glob("drive_c/users/*/OpenplanetNext")))
    return roots


def find_plugin_dirs(home: Path | None = None, platform: str = sys.platform) -> list[Path]:
    """Existing ``OpenplanetNext/Plugins`` folders (created when only OpenplanetNext exists)."""
    home = home or Path.home()
    found: list[Path] = []
    for root in candidate_roots(home, platform):
        resolved = root.resolve()
        if root.is_dir() and all(resolved != f.parent.resolve() for f in found):
            found.append(root / "Plugins")
    return found


def _target_dir(path: Path) -> Path:
    """Accept the Plugins folder or the OpenplanetNext folder above it."""
    if path.name == "OpenplanetNext" or (path / "Plugins").is_dir():
        return path / "Plugins"
    return path


def install(
    plugins_dir: Path | None = None,
    *,
    home: Path | None = None,
    platform: str = sys.platform,
    dry_run: bool = False,
    source: Path = PLUGIN_SOURCE,
) -> list[Installed]:
    """Copy the plugin into ``plugins_dir`` (or every OpenPlanet folder found)."""
    if not (source / "info.toml").is_file():
        raise InstallError(f"the plugin files are missing from this install ({source})")
    if plugins_dir is not None:
        if not plugins_dir.is_dir():
            raise InstallError(
                f"{plugins_dir} is not a folder: pass OpenPlanet's Plugins folder (or the "
                "OpenplanetNext folder above it)"
            )
        targets = [_target_dir(plugins_dir)]
    else:
        targets = find_plugin_dirs(home, platform)
        if not targets:
            looked = "\n  ".join(str(r) for r in candidate_roots(home or Path.home(), platform))
            raise InstallError(
                "found no OpenPlanet folder (OpenplanetNext); start the game once with OpenPlanet "
                f"installed, or pass --path. Looked in:\n  {looked}"
            )
    done: list[Installed] = []
    for plugins in targets:
        dest = plugins / PLUGIN_FOLDER
        replaced = dest.exists()
        if not dry_run:
            plugins.mkdir(parents=True, exist_ok=True)
            if replaced:
                shutil.rmtree(dest)
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        done.append(Installed(dest, replaced))
    return done
