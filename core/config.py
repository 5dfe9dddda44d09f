"""Settings a site keeps in a file rather than typing on every command: ``assetfactory.toml``.

Why a file: the folders a catalog may read from (photo shares, mounted buckets) are a property
of the machine or the team, not of one run, and a scheduled flow has no command line to type
them on. The file is looked for in the working directory, or given with ``--config FILE``::

    # assetfactory.toml
    input_roots = ["/mnt/photo-share", "../vendor-meshes", "s3://supplier-uploads/photos"]

``input_roots``: folders (relative ones are taken from the config file's folder) and S3 prefixes
that catalogs may reference files in, besides the catalog's own folder. Command-line
``--input-root`` values are added to them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

CONFIG_NAME = "assetfactory.toml"
KNOWN_KEYS = ("input_roots",)


@dataclass(frozen=True)
class Settings:
    """What a config file says; ``source`` is the file it came from ("" when none)."""

    input_roots: tuple[str, ...] = ()
    source: str = ""


def load_settings(config: str | Path | None = None, cwd: str | Path | None = None) -> Settings:
    """The settings in ``config``, or in ``./assetfactory.toml`` when it exists, else defaults."""
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            raise InputError(f"config file {path} not found",
                             fix="check the --config path, or leave it out to use "
                             f"./{CONFIG_NAME} when there is one")
    else:
        path = Path(cwd or ".") / CONFIG_NAME
        if not path.is_file():
            return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"config file {path} cannot be read: {exc}",
                         fix="write it as TOML, e.g. input_roots = [\"/mnt/photos\"]") from exc
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise InputError(f"config file {path}: unknown setting(s) {', '.join(unknown)}",
                         fix=f"the settings are: {', '.join(KNOWN_KEYS)}")
    roots = data.get("input_roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) and r.strip() for r in roots):
        raise InputError(f"config file {path}: input_roots must be a list of folder paths or "
                         "s3:// prefixes", fix='write e.g. input_roots = ["/mnt/photos"]')
    base = path.resolve().parent
    resolved = tuple(r if r.startswith("s3://") or Path(r).expanduser().is_absolute()
                     else str(base / r) for r in roots)
    return Settings(input_roots=resolved, source=str(path.resolve()))


def effective_input_roots(cli_roots: list[str] | tuple[str, ...] | None = None,
                          config: str | Path | None = None) -> list[str]:
    """The config file's input roots followed by the command line's."""
    return list(dict.fromkeys([*load_settings(config).input_roots, *(cli_roots or ())]))
