"""The dashboard's guards: the write token and the storage-root file check.

Why a token even on loopback: any local process, and any web page the reviewer has open, can
send requests to 127.0.0.1. Reads are harmless (they show the catalog); every write (a
decision, a reprocess request) must carry the token in an ``Authorization: Bearer`` header.
Browsers never attach that header on their own, and a cross-origin page cannot set it without
a CORS preflight this server never approves, so a forged form post or ``fetch`` is refused.

The token comes, first match wins, from ``--token``, ``$ASSETFACTORY_DASHBOARD_TOKEN``, or the
file ``<config dir>/assetfactory/dashboard-token`` (``$XDG_CONFIG_HOME`` or ``~/.config``),
which is created with a random value (mode 0600) at the first start. It lives in the user's
config folder rather than under the output root, so the dashboard's own file route, an S3
bucket listing or a published delivery can never expose it.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_ENV = "ASSETFACTORY_DASHBOARD_TOKEN"

#: The only top-level folders of the storage root the dashboard serves files from: the
#: named outputs, the content-addressed artifacts, and the dashboard's own render cache.
SERVED_PREFIXES = ("assets/", "objects/", "dashboard/")


class UnsafePath(ValueError):
    """A requested path that is not a plain key inside the storage root."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "assetfactory"


def token_file() -> Path:
    return config_dir() / "dashboard-token"


def load_or_create_token(explicit: str | None = None) -> tuple[str, str]:
    """(token, where it came from). Creates the token file at the first start."""
    if explicit:
        return explicit, "--token"
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, f"${TOKEN_ENV}"
    path = token_file()
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    # O_EXCL: two dashboards starting at once must not both write (the loser reads it back)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), str(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value, f"{path} (new)"


def token_matches(expected: str, authorization: str | None) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header."""
    if not authorization or not expected:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def safe_key(key: str) -> str:
    """A storage key the file route may serve, or ``UnsafePath``.

    Plain relative keys only: no ``..`` or ``.`` segment, no absolute path, no backslash, no
    NUL, no hidden file, and only under ``SERVED_PREFIXES``. Locally the resolved path is also
    checked to stay inside the root (``inside_root``), which catches symlinks.
    """
    if not key or "\x00" in key or "\\" in key or key.startswith("/") or ":" in key.split("/")[0]:
        raise UnsafePath(f"not a storage key: {key!r}")
    parts = key.split("/")
    if any(p in ("", "..", ".") or p.startswith(".") for p in parts):
        raise UnsafePath(f"not a storage key: {key!r}")
    if not key.startswith(SERVED_PREFIXES):
        raise UnsafePath(f"the dashboard serves only {', '.join(SERVED_PREFIXES)}: {key!r}")
    return key


def inside_root(root: Path, key: str) -> Path:
    """The local file for ``key``, refusing anything that resolves outside ``root``."""
    base = root.resolve()
    path = (base / key).resolve()
    if not path.is_relative_to(base):
        raise UnsafePath(f"{key!r} resolves outside the storage root")
    return path


def key_for_uri(root_uri: str, uri: str | None) -> str | None:
    """The storage key of an artifact URI recorded in the catalog, None when outside the root."""
    if not uri:
        return None
    root = root_uri.rstrip("/")
    uri = uri.removeprefix("file://")
    if uri.startswith(root + "/"):
        return uri[len(root) + 1:]
    if not root.startswith("s3://") and not uri.startswith("s3://"):
        try:
            return str(Path(uri).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            return None
    return None
