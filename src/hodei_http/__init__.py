"""The stock HTTP server: an ASGI app over a ``Hodei`` (``create_app``) and the composition
root that serves it on hypercorn's trio worker (``serve``).

Names are loaded on first use, so that ``hodei_http._cli`` (which the ``hodei`` command loads
for every subcommand) does not import Starlette and hypercorn with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._serve import serve
    from ._settings import ServerSettings, SettingsError, TenantSettings, load_settings

__all__ = [
    "ServerSettings",
    "SettingsError",
    "TenantSettings",
    "create_app",
    "load_settings",
    "serve",
]

_WHERE = {
    "ServerSettings": "._settings",
    "SettingsError": "._settings",
    "TenantSettings": "._settings",
    "create_app": "._app",
    "load_settings": "._settings",
    "serve": "._serve",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
