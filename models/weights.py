"""Find a learned backend's weights on this machine. Never downloads.

A batch run must not fetch gigabytes from the internet halfway through a catalog (or fail there
when the network is off): weights are put in place once, by a person or an image build, and
every worker only looks them up. Where they are not, ``MissingWeightsError`` says exactly
where to put them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.errors import MissingWeightsError


def hf_hub_cache() -> Path:
    """The local Hugging Face hub cache, honouring ``HF_HUB_CACHE`` and ``HF_HOME``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def _looks_like_repo_id(s: str) -> bool:
    parts = s.split("/")
    return (len(parts) == 2 and all(parts) and not s.startswith((".", "~"))
            and ":" not in s and "\\" not in s)


def _snapshot(repo_dir: Path, revision: str | None) -> Path | None:
    """The snapshot folder for ``revision`` (a ref name or commit) or the ``main`` ref."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text().strip()
        cand = snapshots / commit
        return cand if cand.is_dir() else None
    if revision:
        cand = snapshots / revision
        return cand if cand.is_dir() else None
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


def hf_cache_dir(repo_id: str) -> Path:
    """Where the hub cache keeps ``repo_id`` (it may not exist)."""
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


def resolve_weights(path_or_repo_id: str, env_var: str | None = None, *,
                    revision: str | None = None, required: tuple[str, ...] = ()) -> Path:
    """A local folder or file holding the weights.

    Looks, in order, at the path in ``env_var`` (when that variable is set), at
    ``path_or_repo_id`` as a local path, and at the local Hugging Face cache for it as a repo id.
    ``required`` names files that must exist inside the folder found (e.g. ``config.json``).
    """
    looked: list[str] = []
    override = os.environ.get(env_var, "") if env_var else ""
    if override:
        p = Path(override).expanduser()
        if p.exists():
            return _check_required(p, required, path_or_repo_id, env_var)
        raise MissingWeightsError(
            f"{env_var}={override} but nothing exists there. Put the weights for "
            f"{path_or_repo_id!r} at {p}, or unset {env_var} to use the Hugging Face cache.")

    p = Path(path_or_repo_id).expanduser()
    if p.exists():
        return _check_required(p, required, path_or_repo_id, env_var)
    looked.append(str(p.resolve()))

    if _looks_like_repo_id(path_or_repo_id):
        repo_dir = hf_cache_dir(path_or_repo_id)
        snap = _snapshot(repo_dir, revision)
        if snap is not None:
            return _check_required(snap, required, path_or_repo_id, env_var)
        looked.append(str(repo_dir / "snapshots"))
        hint = (f"Run `huggingface-cli download {path_or_repo_id}"
                f"{' --revision ' + revision if revision else ''}` on a machine with network "
                f"access (HF_HOME={hf_hub_cache().parent}) and copy the cache here")
    else:
        hint = f"Copy the weights to {p.resolve()}"
    where = f", or set {env_var} to the folder holding them" if env_var else ""
    raise MissingWeightsError(
        f"weights {path_or_repo_id!r} are not on this machine (looked in: {'; '.join(looked)}); "
        f"they are never downloaded at run time. {hint}{where}.")


def _check_required(p: Path, required: tuple[str, ...], what: str, env_var: str | None) -> Path:
    missing = [name for name in required if not (p / name).exists()]
    if missing:
        raise MissingWeightsError(
            f"weights folder {p} for {what!r} lacks {missing}; copy the complete model there"
            f"{' or point ' + env_var + ' at a complete copy' if env_var else ''}.")
    return p


def weights_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 over a weights file, or over a folder's files (relative names + bytes, sorted).

    Symlinks (the HF cache links snapshots to blobs) are followed, so the digest depends only
    on content and layout, not on where the cache lives.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(
        (f for f in root.rglob("*") if f.is_file()), key=lambda f: f.relative_to(root).as_posix())
    h = hashlib.sha256()
    for f in files:
        if root.is_dir():
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


_MANIFESTS: dict[tuple, dict[str, str]] = {}


def weights_manifest(root: str | os.PathLike, files: list[str] | tuple[str, ...],
                     chunk: int = 1 << 20) -> dict[str, str]:
    """sha256 of each of ``files`` (paths relative to ``root``), as {relative path: hex}.

    Multi-gigabyte checkpoints take seconds to hash, and the driver (for the asset identity)
    and every worker (for provenance) ask: results are kept per process, keyed by each file's
    size and modification time, so a file replaced in place is hashed again.
    """
    root = Path(root)
    stats = tuple((rel, (root / rel).stat().st_size, (root / rel).stat().st_mtime_ns)
                  for rel in sorted(files))
    key = (str(root.resolve()), stats)
    if key not in _MANIFESTS:
        out: dict[str, str] = {}
        for rel, _, _ in stats:
            h = hashlib.sha256()
            with open(root / rel, "rb") as fh:
                while block := fh.read(chunk):
                    h.update(block)
            out[rel] = h.hexdigest()
        _MANIFESTS[key] = out
    return dict(_MANIFESTS[key])


def manifest_digest(manifest: dict[str, str]) -> str:
    """One sha256 for a manifest: over the sorted 'sha256  path' lines (sha256sum's format)."""
    lines = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(manifest.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
