"""Where a SKU's outputs live: one folder per SKU that no other SKU can map to.

Why not the SKU itself: SKUs are merchant text. ``Mug 01`` and ``Mug_01`` are two products
whose readable slug is the same; ``../x``, ``/etc``, ``CON``, 300 characters of emoji or a SKU
that differs from another only in case are all real catalog values, and some file systems (and
every CDN path) cannot hold them or fold them together. So the folder is

    assets/<slug>-<digest>/

``slug``: the SKU folded to ASCII (NFKD, accents dropped), every run of characters other than
``A-Z a-z 0-9 . _ -`` replaced by ``_``, at most 48 characters, never empty, never starting with
a dot. ``digest``: the first 16 hex digits of the SHA-256 of the exact SKU string (UTF-8). The
folder name is a function of the SKU alone, not of what else is in the catalog, so it stays the
same when catalogs arrive over time and two runs that never saw each other's SKUs still agree.

Two SKUs share a folder only if they share the slug *and* 64 bits of SHA-256. To turn even that
into an error rather than an overwrite, the exporter claims a folder with ``sku.txt`` (the exact
SKU) and refuses to write into a folder claimed by another SKU (``claim_asset_dir``). The file
also tells a person which SKU a folder belongs to, since the slug is lossy.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from .storage import Storage

#: Every SKU's outputs sit below this prefix of the output root.
ASSETS_PREFIX = "assets"
#: The file that names the SKU owning a folder.
OWNER_FILE = "sku.txt"
SLUG_MAX = 48
DIGEST_HEX = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# names Windows refuses as file names whatever the extension
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
             *(f"LPT{i}" for i in range(10))}


def sku_slug(sku: str) -> str:
    """A readable, safe file-name stem for the SKU (lossy: see ``asset_dir``)."""
    ascii_text = unicodedata.normalize("NFKD", sku).encode("ascii", "ignore").decode("ascii")
    slug = _UNSAFE.sub("_", ascii_text).strip("._-")[:SLUG_MAX].rstrip("._-")
    if not slug:
        return "sku"
    return f"_{slug}" if slug.upper().split(".")[0] in _RESERVED else slug


def sku_digest(sku: str) -> str:
    """16 hex digits of SHA-256 over the exact SKU string."""
    return hashlib.sha256(sku.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_HEX]


def asset_dir(sku: str) -> str:
    """The storage key prefix (no trailing slash) of every output of ``sku``."""
    return f"{ASSETS_PREFIX}/{sku_slug(sku)}-{sku_digest(sku)}"


def asset_key(sku: str, filename: str) -> str:
    """The storage key of one output file of ``sku`` (``filename`` is one plain name)."""
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValueError(f"output file name {filename!r} must be one plain name")
    return f"{asset_dir(sku)}/{filename}"


def asset_file_stem(sku: str) -> str:
    """The stem of the SKU's main files (``<stem>.glb``): readable when downloaded alone."""
    return sku_slug(sku)


class AssetDirTaken(RuntimeError):
    """The SKU's folder is already claimed by a different SKU (a 64-bit digest collision)."""


def claim_asset_dir(store: Storage, sku: str) -> str:
    """Make sure ``asset_dir(sku)`` belongs to ``sku``; write ``sku.txt`` if unclaimed.

    Returns the folder. Raises ``AssetDirTaken`` when another SKU claimed it first, so a
    collision can never overwrite that SKU's files.
    """
    folder = asset_dir(sku)
    key = f"{folder}/{OWNER_FILE}"
    if store.exists(key):
        owner = store.get(key).decode("utf-8", "surrogatepass")
        if owner != sku:
            raise AssetDirTaken(f"output folder {folder} already belongs to SKU {owner!r}")
        return folder
    store.put(key, sku.encode("utf-8", "surrogatepass"), "text/plain; charset=utf-8")
    return folder
