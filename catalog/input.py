"""Read a merchant's catalog file into validated ``SkuSpec`` rows and per-row errors.

A bad row never stops the batch: it becomes a ``RowError`` (SKU, row number, what is wrong,
what to do) and every other row still goes through. Only a file that cannot be read at all
(missing, not CSV/JSON/Parquet, empty) raises ``InputError``.

Formats (chosen by the file's extension)
----------------------------------------
``.csv`` (``.tsv``: tab-separated), ``.jsonl`` / ``.ndjson`` (one JSON object per line),
``.json`` (a JSON array of objects), ``.parquet``. A ``.csv`` whose header has Shopify's
``Handle`` and ``Image Src`` columns (and no ``sku`` column) is read as a Shopify product export:

* one SKU per ``Handle`` (the rows of a handle are grouped, wherever they are in the file);
  the SKU is the handle's first non-blank ``Variant SKU``, else the handle itself;
* its images are the handle's ``Image Src`` values ordered by ``Image Position``; the first is
  the ``front`` view, the others are unlabelled;
* ``title`` = ``Title``, ``category`` = ``Product Category`` (else ``Type``); the handle, the
  variant SKUs and the first row's other non-blank columns go to ``metadata``;
* Shopify image URLs are ``https://``: the factory does not fetch them. Download them next to
  the catalog, into the catalog's folder or its ``images/`` folder, under the URL's file name,
  and they are picked up.

Schema
------
=============  ==========================================================================
column         meaning
=============  ==========================================================================
``sku``        required, unique in the file; any text without control characters, at most
               128 characters (outputs go to ``core.paths.asset_dir(sku)``, safe for any SKU)
``title``      free text
``category``   free text (e.g. ``chair``); rules and profiles may key on it
``images``     the product photos, see below
``width_mm``   optional, a positive number: the product's size along X (left-right)
``height_mm``  optional, positive: along Y (up)
``depth_mm``   optional, positive: along Z (front-back)
``mesh_uri``   optional: a mesh to ingest instead of (or beside) generating from photos
``material``   optional free text (e.g. ``wood``, ``metal``)
(other)        kept in ``SkuSpec.metadata`` as strings (CSV) or JSON scalars; lists and
               objects are kept as JSON text
=============  ==========================================================================

Column names are matched case-insensitively (``Width_MM`` and ``width mm`` work). Each row
needs ``images`` or ``mesh_uri`` (or both).

``images``: in CSV, entries separated by ``;`` (or ``|``), each ``[view=]uri[@azimuth,elevation]``,
e.g. ``front=photos/a.png@0,15; photos/b.png; back=photos/c.png`` (``@azimuth`` alone is allowed;
degrees; azimuth 0 = front, 90 = the product's right). A CSV cell may also hold a JSON list. In
JSONL/JSON/Parquet, ``images`` is such a string, or a list of such strings or of objects
``{"uri", "view", "azimuth_deg", "elevation_deg"}`` (only ``uri`` required). View labels:
``front back left right top bottom front_left front_right back_left back_right`` (any case,
``-`` or space for ``_``), or none. The azimuth (and, for top/bottom, the elevation) comes from
the label when not given.

URIs: a path relative to the catalog file's folder (``SkuSpec.catalog_root``), an absolute path
or ``file://`` URI, or ``s3://bucket/key`` (not checked here: the run reads it). Local files
must exist, be files and be readable, and must stay inside the catalog's folder or one of the
input roots the user allowed (``read_catalog(path, roots)``; ``--input-root`` on the command
line, ``input_roots`` in ``assetfactory.toml``): no ``../`` out of them, no absolute path or
symlink leading elsewhere, so that a catalog cannot make the factory read arbitrary files. A
file reached through an input root is stored as its resolved absolute path. A catalog on S3
(``s3://bucket/dir/catalog.csv``) reads relative paths as keys beside it
(``s3://bucket/dir/photos/a.png``), and they must stay under its folder or an S3 input root.
``http(s)://`` and other schemes are refused: the factory does not fetch over the network at
run time.

Row errors (``RowError.code``): ``missing_sku``, ``bad_sku``, ``duplicate_sku`` (the first row
with a SKU wins; later ones are errors), ``bad_number``, ``no_inputs`` (neither images nor mesh),
``unknown_view``, ``bad_images`` (unparsable cell), ``unsupported_scheme``, ``outside_root``,
``missing_file``, ``not_a_file``, ``unreadable``, ``bad_row`` (a JSONL line that is not an
object). A row with several problems lists them all; ``code`` is the first. An error row's SKU
is its ``sku`` if present, else ``row-<n>``; ``row`` is the 1-based data row number (CSV:
after the header; JSONL: counting non-blank lines).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..core.errors import InputError
from ..core.types import VIEW_AZIMUTHS, VIEW_ELEVATIONS, ImageSpec, SkuSpec

log = logging.getLogger(__name__)

KNOWN_COLUMNS = ("sku", "title", "category", "images", "width_mm", "height_mm", "depth_mm",
                 "mesh_uri", "material")
VIEW_LABELS = tuple(VIEW_AZIMUTHS) + tuple(VIEW_ELEVATIONS)
MAX_SKU_LEN = 128
_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_ENTRY = re.compile(rf"^(?:(?P<view>[A-Za-z][A-Za-z0-9_ \-]*)=)?(?P<uri>.+?)"
                    rf"(?:@(?P<az>{_NUM})(?:,\s*(?P<el>{_NUM}))?)?$")
_NETWORK_FIX = ("this factory does not fetch over the network at run time; download the file "
                "into the catalog folder or an S3 bucket and reference it by that path")


@dataclass(frozen=True)
class RowError:
    """A catalog row that cannot become an asset, and what the merchant can do about it."""

    sku: str
    row: int
    stage: str
    message: str
    fix: str
    code: str = "error"


@dataclass(frozen=True)
class CatalogParse:
    """The outcome of reading one catalog file: good rows, error rows, where, which format."""

    specs: list[SkuSpec]
    errors: list[RowError]
    source: str
    format: str


@dataclass(frozen=True)
class _Problem:
    code: str
    message: str
    fix: str


@dataclass
class _Raw:
    """One data row before validation: normalised known fields plus everything else."""

    row: int
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: _Problem | None = None


# --------------------------------------------------------------------------- public entry point


@dataclass(frozen=True)
class InputRoots:
    """Where a catalog may read files from: its own folder plus the roots a user allowed.

    ``catalog``: the catalog file's folder (a local path, or ``s3://bucket/prefix`` for a
    catalog on S3). ``local`` / ``s3``: extra roots from ``--input-root`` or the config file.
    """

    catalog: Path | str
    local: tuple[Path, ...] = ()
    s3: tuple[str, ...] = ()

    def local_roots(self) -> tuple[Path, ...]:
        own = (self.catalog,) if isinstance(self.catalog, Path) else ()
        return own + self.local

    def describe(self) -> str:
        extra = [str(r) for r in self.local] + list(self.s3)
        return f"the catalog folder {self.catalog}" + (
            f" or the input roots {', '.join(extra)}" if extra else "")


def input_roots(roots: Iterable[str | os.PathLike] = ()) -> tuple[tuple[Path, ...],
                                                                  tuple[str, ...]]:
    """Normalise extra input roots: local folders (resolved, must exist) and S3 prefixes."""
    local: list[Path] = []
    s3: list[str] = []
    for root in roots:
        text = str(root).strip()
        if not text:
            continue
        if text.startswith("s3://"):
            parsed = urlparse(text)
            if not parsed.netloc:
                raise InputError(f"input root {text!r} names no bucket",
                                 fix="write S3 input roots as s3://bucket or s3://bucket/prefix")
            s3.append(f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/"))
            continue
        m = _SCHEME.match(text)
        if m and len(m.group(1)) > 1 and m.group(1).lower() != "file":
            raise InputError(f"input root {text!r}: only local folders and s3:// prefixes can be "
                             "input roots", fix="give a folder path or s3://bucket/prefix")
        path = Path(unquote(urlparse(text).path) if text.startswith("file:") else text)
        path = path.expanduser().resolve()
        if not path.is_dir():
            raise InputError(f"input root {text!r} is not a folder on this machine ({path})",
                             fix="mount or create it, or drop it from --input-root / "
                             "input_roots in the config file")
        local.append(path)
    return tuple(dict.fromkeys(local)), tuple(dict.fromkeys(s3))


def read_catalog(path: str | Path, roots: Iterable[str | os.PathLike] = ()) -> CatalogParse:
    """Parse a catalog file (local or ``s3://``); bad rows become ``RowError``s, an unreadable
    file raises. ``roots``: folders or S3 prefixes, besides the catalog's own folder, that the
    catalog may reference files in (``--input-root``)."""
    extra_local, extra_s3 = input_roots(roots)
    if str(path).startswith("s3://"):
        return _read_s3_catalog(str(path), extra_local, extra_s3)
    p = Path(path).expanduser()
    root = p.absolute().parent.resolve()
    return _read_local(p, InputRoots(root, extra_local, extra_s3), str(p.absolute()))


def _read_s3_catalog(uri: str, extra_local: tuple[Path, ...], extra_s3: tuple[str, ...]
                     ) -> CatalogParse:
    """An S3 catalog: relative paths in it are keys next to it, under the same prefix."""
    import tempfile

    from botocore.exceptions import BotoCoreError, ClientError

    from ..core.storage import read_ref

    parsed = urlparse(uri)
    name = posixpath.basename(parsed.path)
    if not parsed.netloc or not name:
        raise InputError(f"catalog {uri!r} is not s3://bucket/key",
                         fix="give the catalog's full S3 key, e.g. s3://bucket/catalogs/a.csv")
    try:
        data = read_ref(uri)
    except (BotoCoreError, ClientError) as exc:
        raise InputError(f"catalog {uri} cannot be read from S3 ({exc})",
                         fix="check the key, the credentials and AWS_ENDPOINT_URL") from exc
    folder = f"s3://{parsed.netloc}/{posixpath.dirname(parsed.path.strip('/'))}".rstrip("/")
    with tempfile.TemporaryDirectory(prefix="assetfactory-catalog-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(data)
        return _read_local(local, InputRoots(folder, extra_local, extra_s3), uri)


def _read_local(p: Path, roots: InputRoots, source: str) -> CatalogParse:
    fmt = check_file(p)
    http_hint = ""
    if fmt == "csv":
        header, rows = _read_csv(p, "\t" if p.suffix.lower() == ".tsv" else ",")
        if _is_shopify(header):
            fmt = "shopify"
            raws = _shopify_raws(rows, roots.catalog)
            http_hint = (" (Shopify exports: save the image as images/<file name from the URL> "
                         "beside the catalog and it is picked up)")
        else:
            _require_sku_column(p, header)
            raws = [_csv_raw(i, r) for i, r in enumerate(rows, start=1)]
    elif fmt == "jsonl":
        raws = _read_jsonl(p)
    elif fmt == "json":
        raws = _read_json(p)
    else:
        raws = _read_parquet(p)
    specs, errors = _validate_all(raws, roots, http_hint)
    log.info("catalog %s (%s): %d rows, %d ok, %d errors", source, fmt, len(raws), len(specs),
             len(errors))
    return CatalogParse(specs=specs, errors=errors, source=source, format=fmt)


def check_file(path: str | Path) -> str:
    """The checks that need no parsing (the file exists, is a readable, non-empty file of a
    known type); returns its format. Cheap, so a command line can refuse a wrong path at once,
    before it starts anything."""
    p = Path(path).expanduser()
    _check_file(p)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(
            f"catalog {p}: unsupported file type {p.suffix or '(no extension)'!r}",
            fix="save the catalog as .csv, .jsonl/.ndjson, .json or .parquet")
    return fmt


# --------------------------------------------------------------------------- file readers


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputError(f"catalog file {p} not found",
                         fix="check the path; relative paths are taken from the current folder")
    if not p.is_file():
        raise InputError(f"catalog {p} is not a file", fix="pass the catalog file, not a folder")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"catalog {p} cannot be read: {exc.strerror or exc}",
                         fix="check the file's permissions") from exc
    if size == 0:
        raise InputError(f"catalog {p} is empty", fix="export the catalog again; it has no rows")


def _decode_text(p: Path) -> str:
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError(f"catalog {p} is not a text file (it holds binary data)",
                         fix="export the catalog as UTF-8 CSV or JSON Lines")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != "utf-8-sig":
            log.warning("catalog %s is not UTF-8; read it as %s", p, encoding)
        return text
    raise InputError(f"catalog {p} is neither UTF-8 nor Windows-1252 text",
                     fix="export the catalog as UTF-8")


def _read_csv(p: Path, delimiter: str) -> tuple[list[str], list[dict[str, str]]]:
    text = _decode_text(p)
    if not text.strip():
        raise InputError(f"catalog {p} is empty", fix="export the catalog again; it has no rows")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = [row for row in reader
                if any(v.strip() for v in row.values() if isinstance(v, str))]
    except csv.Error as exc:
        raise InputError(f"catalog {p} is not valid CSV: {exc}",
                         fix="export it again as comma-separated UTF-8 CSV") from exc
    if not rows:
        raise InputError(f"catalog {p} has a header but no data rows",
                         fix="add one row per SKU below the header")
    return header, rows


def _csv_raw(i: int, row: dict[str | None, Any]) -> _Raw:
    if row.get(None):  # DictReader puts cells beyond the header under the key None
        return _Raw(i, data={"sku": row.get("sku") or next(
            (v for k, v in row.items() if k and _norm_column(k) == "sku"), "")},
            problem=_Problem("bad_row", f"row {i} has more cells than the header",
                             "quote cells that contain commas, e.g. \"front=a.png@0,15\""))
    return _split_fields(i, {k: ("" if v is None else v) for k, v in row.items()})


def _read_jsonl(p: Path) -> list[_Raw]:
    text = _decode_text(p)
    raws: list[_Raw] = []
    parsed = 0
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"catalog {p} is empty", fix="write one JSON object per line")
    for i, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raws.append(_Raw(i, problem=_Problem(
                "bad_row", f"row {i} is not valid JSON ({exc.msg} at column {exc.colno})",
                "write each row as one JSON object on its own line")))
            continue
        parsed += 1
        raws.append(_object_raw(i, obj))
    if parsed == 0:
        raise InputError(f"catalog {p} is not JSON Lines: no line parses as JSON",
                         fix="write one JSON object per line, or use the .csv extension for CSV")
    return raws


def _read_json(p: Path) -> list[_Raw]:
    text = _decode_text(p)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"catalog {p} is not valid JSON: {exc.msg} at line {exc.lineno}",
                         fix="write a JSON array of objects, one per SKU") from exc
    if not isinstance(obj, list) or not obj:
        raise InputError(f"catalog {p} must hold a non-empty JSON array of objects",
                         fix="write a JSON array of objects, one per SKU")
    return [_object_raw(i, o) for i, o in enumerate(obj, start=1)]


def _object_raw(i: int, obj: Any) -> _Raw:
    if not isinstance(obj, dict):
        return _Raw(i, problem=_Problem("bad_row", f"row {i} is a JSON {type(obj).__name__}, "
                                        "not an object", "write each row as a JSON object"))
    return _split_fields(i, obj)


def _read_parquet(p: Path) -> list[_Raw]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"catalog {p} is not a readable Parquet file: {exc}",
                         fix="write it again with pyarrow/pandas, or export CSV") from exc
    if table.num_rows == 0:
        raise InputError(f"catalog {p} has no rows", fix="add one row per SKU")
    _require_sku_column(p, table.column_names)
    return [_split_fields(i, r) for i, r in enumerate(table.to_pylist(), start=1)]


def _norm_column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _require_sku_column(p: Path, header: Iterable[str]) -> None:
    header = list(header)
    if "sku" not in {_norm_column(h) for h in header}:
        raise InputError(f"catalog {p} has no 'sku' column (columns: {', '.join(header)})",
                         fix="add a 'sku' column with one unique id per product")


def _split_fields(i: int, row: dict[str, Any]) -> _Raw:
    """Known columns (matched case-insensitively) to ``data``; the rest to ``metadata``."""
    raw = _Raw(i)
    for key, value in row.items():
        norm = _norm_column(key)
        if norm in KNOWN_COLUMNS and norm not in raw.data:
            raw.data[norm] = value
        else:
            raw.metadata[str(key)] = _scalar(value)
    return raw


def _scalar(value: Any) -> Any:
    """A JSON scalar for metadata: nested values become JSON text, NaN becomes None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        try:
            value = value.item()
        except (AttributeError, ValueError, TypeError):
            pass
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- Shopify


def _is_shopify(header: list[str]) -> bool:
    cols = set(header)
    return {"Handle", "Image Src"} <= cols and "sku" not in {_norm_column(h) for h in header}


def _shopify_raws(rows: list[dict[str, str]], root: Path | str) -> list[_Raw]:
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    raws: list[_Raw] = []
    for i, row in enumerate(rows, start=1):
        handle = (row.get("Handle") or "").strip()
        if not handle:
            raws.append(_Raw(i, problem=_Problem(
                "missing_sku", f"row {i} has a blank Handle",
                "every row of a Shopify export needs its product's Handle")))
            continue
        groups.setdefault(handle, []).append((i, row))
    for handle, group in groups.items():
        raws.append(_shopify_product(handle, group, root))
    return sorted(raws, key=lambda r: r.row)


def _shopify_product(handle: str, group: list[tuple[int, dict[str, str]]], root: Path | str
                     ) -> _Raw:
    first_row, first = group[0]
    variant_skus = [s for _, r in group if (s := (r.get("Variant SKU") or "").strip())]
    images: list[tuple[float, int, str]] = []
    for order, (_, r) in enumerate(group):
        src = (r.get("Image Src") or "").strip()
        if src and src not in {s for _, _, s in images}:
            images.append((_position(r.get("Image Position")), order, src))
    images.sort()
    entries = [{"uri": _shopify_local(src, root), "view": "front" if k == 0 else ""}
               for k, (_, _, src) in enumerate(images)]
    used = {"Handle", "Title", "Image Src", "Image Position", "Variant SKU", "Product Category",
            "Type"}
    metadata: dict[str, Any] = {"handle": handle, "variant_skus": ";".join(variant_skus)}
    metadata.update({k: v for k, v in first.items() if k not in used and (v or "").strip()})
    data = {"sku": variant_skus[0] if variant_skus else handle,
            "title": first.get("Title", ""),
            "category": (first.get("Product Category") or first.get("Type") or ""),
            "images": entries}
    return _Raw(first_row, data=data, metadata=metadata)


def _position(text: str | None) -> float:
    try:
        return float((text or "").strip())
    except ValueError:
        return math.inf


def _shopify_local(src: str, root: Path | str) -> str:
    """A downloaded copy of a Shopify image URL, if one sits beside a local catalog."""
    if not src.lower().startswith(("http://", "https://")) or not isinstance(root, Path):
        return src
    name = unquote(Path(urlparse(src).path).name)
    for rel in (name, f"images/{name}"):
        if name and (root / rel).is_file():
            return rel
    return src


# --------------------------------------------------------------------------- validation


def _validate_all(raws: list[_Raw], root: InputRoots, http_hint: str
                  ) -> tuple[list[SkuSpec], list[RowError]]:
    specs: list[SkuSpec] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for raw in raws:
        out = _validate_row(raw, root, seen, http_hint)
        (specs if isinstance(out, SkuSpec) else errors).append(out)  # type: ignore[arg-type]
    return specs, errors


def _validate_row(raw: _Raw, root: InputRoots, seen: dict[str, int], http_hint: str
                  ) -> SkuSpec | RowError:
    sku = _text(raw.data.get("sku"))
    if raw.problem is not None:
        problems = [raw.problem]
        dims, images, mesh_uri = {}, [], None
    else:
        problems = _check_sku(sku, raw.row, seen)
        dims = {k: _number(raw.data.get(k), k, problems)
                for k in ("width_mm", "height_mm", "depth_mm")}
        images_cell = raw.data.get("images")
        images = _images(images_cell, root, problems, http_hint)
        mesh_cell = _text(raw.data.get("mesh_uri"))
        mesh_uri = _uri(mesh_cell, root, "mesh_uri", problems, http_hint) if mesh_cell else None
        if not mesh_cell and _blank(images_cell):
            problems.append(_Problem("no_inputs", "the row has neither images nor mesh_uri",
                                     "add product photos in 'images' or a mesh in 'mesh_uri'"))
    if problems:
        return RowError(sku=sku or f"row-{raw.row}", row=raw.row, stage="catalog",
                        message="; ".join(p.message for p in problems),
                        fix="; ".join(dict.fromkeys(p.fix for p in problems)),
                        code=problems[0].code)
    return SkuSpec(sku=sku, title=_text(raw.data.get("title")),
                   category=_text(raw.data.get("category")), images=tuple(images),
                   mesh_uri=mesh_uri, material=_text(raw.data.get("material")) or None,
                   metadata=raw.metadata, row=raw.row, catalog_root=str(root.catalog), **dims)


def _blank(cell: Any) -> bool:
    if isinstance(cell, str):
        return not cell.strip()
    if isinstance(cell, (list, tuple)):
        return len(cell) == 0
    return cell is None or (isinstance(cell, float) and math.isnan(cell))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _check_sku(sku: str, row: int, seen: dict[str, int]) -> list[_Problem]:
    if not sku:
        return [_Problem("missing_sku", "sku is blank", "give every row a unique sku")]
    # any other text is fine: outputs go to a folder derived from it (core.paths.asset_dir)
    if len(sku) > MAX_SKU_LEN or any(ord(c) < 32 or ord(c) == 127 for c in sku):
        return [_Problem("bad_sku", f"sku {sku[:40]!r} cannot name an asset (no control "
                         f"characters; at most {MAX_SKU_LEN} characters)", "rename the sku")]
    if sku in seen:
        return [_Problem("duplicate_sku", f"sku {sku!r} already used on row {seen[sku]}",
                         "give each product its own sku; the first row with it is kept")]
    seen[sku] = row
    return []


def _to_float(value: Any) -> float:
    """A float from a number or numeric text; NaN for anything else (booleans included)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return math.nan


def _number(value: Any, name: str, problems: list[_Problem]) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None  # a missing value in Parquet/pandas
    number = _to_float(value)
    if not (math.isfinite(number) and number > 0):
        problems.append(_Problem("bad_number", f"{name} {value!r} is not a positive number",
                                 f"write {name} as a plain number of millimetres, e.g. 450"))
        return None
    return number


# --------------------------------------------------------------------------- images and URIs


def _images(cell: Any, root: InputRoots, problems: list[_Problem], http_hint: str
            ) -> list[ImageSpec]:
    entries = _image_entries(cell, problems)
    out: list[ImageSpec] = []
    for raw_uri, view, az, el in entries:
        label = view.strip().lower().replace("-", "_").replace(" ", "_")
        if label and label not in VIEW_LABELS:
            problems.append(_Problem(
                "unknown_view", f"unknown view label {view!r} for {raw_uri}",
                f"use one of {', '.join(VIEW_LABELS)}, or leave the label out"))
            continue
        az = _angle(az, "azimuth", raw_uri, problems, -math.inf, math.inf)
        el = _angle(el, "elevation", raw_uri, problems, -90.0, 90.0)
        uri = _uri(raw_uri, root, "image", problems, http_hint)
        if uri is None:
            continue
        out.append(ImageSpec(
            uri=uri, view=label,
            azimuth_deg=az if az is not None else VIEW_AZIMUTHS.get(label),
            elevation_deg=el if el is not None else VIEW_ELEVATIONS.get(label)))
    return out


_Entry = tuple[str, str, Any, Any]


def _image_entries(cell: Any, problems: list[_Problem]) -> list[_Entry]:
    """Split an images cell into (uri, view, azimuth, elevation) entries."""
    if cell is None:
        return []
    if isinstance(cell, str):
        text = cell.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                cell = json.loads(text)
            except json.JSONDecodeError:
                return _bad_images(f"images cell {text[:60]!r} starts like JSON but does not "
                                   "parse", problems)
        else:
            parts = [p.strip() for p in re.split(r"[;|]", text)]
            return _collect([_string_entry(p) for p in parts if p], problems)
    if isinstance(cell, (list, tuple)):
        return _collect([_item_entry(item) for item in cell], problems)
    return _bad_images(f"images value of type {type(cell).__name__} is not a list or text",
                       problems)


def _collect(items: list[_Entry | str], problems: list[_Problem]) -> list[_Entry]:
    out = []
    for item in items:
        if isinstance(item, str):
            _bad_images(item, problems)
        else:
            out.append(item)
    return out


def _bad_images(message: str, problems: list[_Problem]) -> list[_Entry]:
    problems.append(_Problem(
        "bad_images", message, "write images as 'view=path@azimuth,elevation' entries separated "
        "by ';' (e.g. front=photos/a.png@0,15; photos/b.png), or as a JSON list"))
    return []


def _string_entry(text: str) -> _Entry | str:
    m = _ENTRY.match(text.strip())
    if not m or text.strip().endswith("=") or not m.group("uri").strip() or m.group("uri").strip().startswith(("@", "=")):
        return f"images entry {text!r} is not [view=]uri[@azimuth,elevation]"
    return (m.group("uri").strip(), m.group("view") or "", m.group("az"), m.group("el"))


def _item_entry(item: Any) -> _Entry | str:
    if isinstance(item, str):
        return _string_entry(item)
    if isinstance(item, dict):
        uri = item.get("uri")
        if not isinstance(uri, str) or not uri.strip():
            return f"images entry {item!r} has no 'uri' text"
        view = item.get("view") or ""
        if not isinstance(view, str):
            return f"images entry {item!r} has a non-text 'view'"
        return (uri.strip(), view, item.get("azimuth_deg"), item.get("elevation_deg"))
    return f"images entry {item!r} is neither text nor an object"


def _angle(value: Any, name: str, uri: str, problems: list[_Problem], lo: float, hi: float
           ) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _to_float(value)
    if not (math.isfinite(number) and lo <= number <= hi):
        problems.append(_Problem("bad_number", f"{name} {value!r} for {uri} is not a number"
                                 + (f" in [{lo:g}, {hi:g}]" if math.isfinite(lo) else ""),
                                 f"write the {name} in degrees, e.g. front=a.png@0,15"))
        return None
    return number


_OUTSIDE_FIX = ("copy the file into the catalog's folder and reference it by a relative path, "
                "or allow its folder with --input-root DIR (or input_roots in "
                "assetfactory.toml)")


def _uri(raw: str, roots: InputRoots, what: str, problems: list[_Problem], http_hint: str = ""
         ) -> str | None:
    """Check a URI from the catalog; return what to store in the spec, None on a problem."""
    text = raw.strip()
    m = _SCHEME.match(text)
    if m and len(m.group(1)) > 1:  # one letter is a Windows drive, not a scheme
        scheme = m.group(1).lower()
        if scheme == "s3":
            parsed = urlparse(text)
            if parsed.netloc and parsed.path.strip("/"):
                return text
            problems.append(_Problem("unsupported_scheme", f"{what} {text!r} is not "
                                     "s3://bucket/key", "write S3 URIs as s3://bucket/key"))
            return None
        if scheme != "file":
            problems.append(_Problem(
                "unsupported_scheme", f"{what} {text!r}: the {scheme}:// scheme is not supported",
                _NETWORK_FIX + http_hint if scheme in ("http", "https") else
                "use a path relative to the catalog file, file:// or s3://"))
            return None
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            problems.append(_Problem("unsupported_scheme", f"{what} {text!r} names a remote "
                                     "host", "use file:///absolute/path on this machine"))
            return None
        local = Path(unquote(parsed.path))
    else:
        local = Path(text)
    if isinstance(roots.catalog, str) and not local.is_absolute():
        return _s3_relative(text, roots, what, problems)
    resolved, problem = _check_local(local, roots, what, text)
    if problem:
        problems.append(problem)
        return None
    if isinstance(roots.catalog, Path) and resolved.is_relative_to(roots.catalog):
        return str(local) if local.is_absolute() else Path(os.path.normpath(text)).as_posix()
    # allowed by an extra root: keep the resolved path, so later readers need no root to check
    return str(resolved)


def _s3_relative(text: str, roots: InputRoots, what: str, problems: list[_Problem]
                 ) -> str | None:
    """A relative path in an S3 catalog: the key beside the catalog, inside an allowed prefix."""
    folder = str(roots.catalog)
    bucket_path = folder[len("s3://"):]
    key = posixpath.normpath(posixpath.join(bucket_path, text.replace("\\", "/")))
    uri = f"s3://{key}"
    allowed = (folder, *roots.s3)
    if not any(uri == r or uri.startswith(r.rstrip("/") + "/") for r in allowed):
        problems.append(_Problem("outside_root", f"{what} {text!r} leads outside "
                                 f"{roots.describe()}", _OUTSIDE_FIX))
        return None
    return uri


def _check_local(local: Path, roots: InputRoots, what: str, text: str
                 ) -> tuple[Path, _Problem | None]:
    base = roots.catalog if isinstance(roots.catalog, Path) else None
    if not local.is_absolute() and base is None:
        return local, _Problem("outside_root", f"{what} {text!r} is relative",
                               "use a path relative to the catalog")
    full = local if local.is_absolute() else base / local  # type: ignore[operator]
    try:
        resolved = full.resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        return full, _Problem("unreadable", f"{what} {text!r} cannot be resolved ({exc})",
                              "fix the path (is there a symlink loop?)")
    allowed = roots.local_roots()
    if not any(resolved.is_relative_to(r) for r in allowed):
        lexical = Path(os.path.normpath(full))
        via = " through a symlink" if any(lexical.is_relative_to(r) for r in allowed) else ""
        return resolved, _Problem("outside_root", f"{what} {text!r} leads{via} outside "
                                  f"{roots.describe()}", _OUTSIDE_FIX)
    if not resolved.exists():
        return resolved, _Problem(
            "missing_file", f"{what} {text!r} not found (looked for {resolved})",
            "check the file name; relative paths start at the catalog file's folder")
    if not resolved.is_file():
        return resolved, _Problem(
            "not_a_file", f"{what} {text!r} is a directory or special file, not a regular file",
            "reference one file per entry")
    try:
        with open(resolved, "rb"):
            pass
    except OSError as exc:
        return resolved, _Problem(
            "unreadable", f"{what} {text!r} cannot be read ({exc.strerror or exc})",
            "make the file readable by the user running the factory")
    return resolved, None
