"""The review dashboard (``assetfactory serve``): runs, the triage queue, each asset in 3D and
AR, and review decisions, in a browser. See ``app.py`` for the pages and ``security.py`` for
the token and the file guard."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
