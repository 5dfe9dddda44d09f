"""Typed errors. Every error that reaches a user names the SKU, the stage and what to do."""

from __future__ import annotations


class AssetError(Exception):
    """A problem with one asset's input or processing.

    ``stage`` and ``sku`` may be filled in later by the runner, which knows them; the stage
    body only has to say what went wrong (``message``) and what the user can do (``fix``).
    """

    def __init__(self, message: str, fix: str = "", *, stage: str = "", sku: str = "",
                 code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.stage = stage
        self.sku = sku
        self.code = code

    def __str__(self) -> str:
        where = ":".join(p for p in (self.sku, self.stage) if p)
        head = f"[{where}] " if where else ""
        tail = f" Fix: {self.fix}" if self.fix else ""
        return f"{head}{self.message}{tail}"

    def __reduce__(self):  # keep fields across pickling (Ray, multiprocessing)
        return (_rebuild, (type(self), self.message, self.fix, self.stage, self.sku, self.code))


def _rebuild(cls, message, fix, stage, sku, code):
    return cls(message, fix, stage=stage, sku=sku, code=code)


class InputError(AssetError):
    """The merchant's input (row, image, mesh) is unusable as given."""


class ProcessingError(AssetError):
    """A stage could not produce a valid result from valid-looking input."""


class ValidationFailed(AssetError):
    """An exported file failed an external validator."""


class OptionsError(ValueError):
    """Options given to a stage are out of range."""


class MissingWeightsError(RuntimeError):
    """A learned backend's weights are not on this machine; never downloaded at run time."""
