"""The four torchvision transforms ``hy3dgen``'s image conditioner uses, on tensors only.

Why: ``hy3dgen.shapegen.models.conditioner`` imports ``torchvision.transforms`` at module level
for Resize -> CenterCrop -> Normalize of a (B, C, H, W) tensor, and no torchvision build exists
for the CPU torch wheel this project pins (PyPI's torchvision fails to import beside it). Where a
real torchvision imports, it is used; otherwise ``shim()`` puts this module in its place while
``hy3dgen`` is imported, and removes it again so nothing else sees a fake torchvision. Import
diffusers and transformers before entering ``shim()``: they probe for torchvision when first
imported and must find none.

Each transform follows torchvision's tensor code path: Resize of the shorter side with
``interpolate(..., antialias=True, align_corners=False)``, CenterCrop with torchvision's rounding
(zero padding when the image is smaller), Normalize as ``(x - mean) / std``.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class Compose:
    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
                 antialias=True) -> None:
        self.size, self.mode, self.antialias = size, InterpolationMode(interpolation), antialias

    def __call__(self, x):
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        if isinstance(self.size, int) or len(self.size) == 1:
            s = self.size if isinstance(self.size, int) else self.size[0]
            short, long = (h, w) if h <= w else (w, h)
            new_short, new_long = s, int(s * long / short)
            out_h, out_w = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            out_h, out_w = self.size
        if (out_h, out_w) == (h, w):
            return x
        squeeze = x.ndim == 3
        y = x[None] if squeeze else x
        kwargs = {} if self.mode is InterpolationMode.NEAREST else {
            "align_corners": False, "antialias": bool(self.antialias)}
        y = F.interpolate(y.float() if not y.is_floating_point() else y, size=(out_h, out_w),
                          mode=self.mode.value, **kwargs).to(x.dtype)
        return y[0] if squeeze else y


class CenterCrop:
    def __init__(self, size) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, x):
        import torch.nn.functional as F

        ch, cw = self.size
        h, w = x.shape[-2:]
        if ch > h or cw > w:
            pad_l, pad_t = (cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0
            pad_r = (cw - w + 1) // 2 if cw > w else 0
            pad_b = (ch - h + 1) // 2 if ch > h else 0
            x = F.pad(x, [pad_l, pad_r, pad_t, pad_b])
            h, w = x.shape[-2:]
        top = round((h - ch) / 2.0)
        left = round((w - cw) / 2.0)
        return x[..., top:top + ch, left:left + cw]


class Normalize:
    def __init__(self, mean, std, inplace=False) -> None:
        self.mean, self.std = list(mean), list(std)

    def __call__(self, x):
        import torch

        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def torchvision_imports() -> bool:
    """Whether a working torchvision is installed (PyPI's fails beside the CPU torch pin)."""
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from a mismatched build
        for name in [m for m in sys.modules if m == "torchvision" or
                     m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


@contextlib.contextmanager
def shim() -> Iterator[None]:
    """While active, ``import torchvision.transforms`` gives this module (if no real one)."""
    if torchvision_imports():
        yield
        return
    pkg = types.ModuleType("torchvision")
    pkg.__path__ = []  # a package, so "from torchvision import transforms" resolves
    # find_spec() raises on a module without a spec; the spec has no loader, so nothing can
    # mistake it for an installed distribution (it has no metadata either).
    pkg.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    pkg.transforms = sys.modules[__name__]  # type: ignore[attr-defined]
    sys.modules["torchvision"] = pkg
    sys.modules["torchvision.transforms"] = sys.modules[__name__]
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.transforms", None)
