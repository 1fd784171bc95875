"""The stock HTTP server: an ASGI app over a ``Hodei`` (``create_app``) and the composition
root that serves it on hypercorn's trio worker (``serve``).

Names are loaded on first use, so that ``hodei_http._cli`` (which the ``hodei`` command loads
for every subcommand) does not import Starlette and hypercorn with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__, globals())
