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


class MissingArtifact(AssetError, KeyError):
    """A stage asked for an artifact no earlier stage wrote (a recipe without the stage that
    makes it, or a state built by hand)."""

    def __init__(self, message: str, fix: str = "", *, stage: str = "", sku: str = "",
                 code: str = "missing_artifact") -> None:
        super().__init__(message, fix, stage=stage, sku=sku, code=code)

    __str__ = AssetError.__str__


class OptionsError(ValueError):
    """Options given to a stage (or a profile, or a recipe) are out of range or unknown.

    ``stage`` names what the options belong to; every message reads
    ``<stage> options: <what is wrong>``, wherever it was raised.
    """

    def __init__(self, message: str, *, stage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage

    def __str__(self) -> str:
        return f"{self.stage} options: {self.message}" if self.stage else self.message

    def __reduce__(self):
        return (_rebuild_options, (self.message, self.stage))


def _rebuild_options(message, stage):
    return OptionsError(message, stage=stage)


class PreflightError(RuntimeError):
    """A tool the run needs (Node and the glTF-Validator, EGL, usd-core) is missing, maybe
    beside a learned model's weights or library; raised once when a run starts, listing each
    problem with how to fix it."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"- {what}: {fix}" for what, fix in problems]
        super().__init__("the run cannot start, these are missing:\n" + "\n".join(lines))


class MissingWeightsError(RuntimeError):
    """A learned backend's weights are not on this machine; never downloaded at run time."""
