"""The REST API: :func:`create_app` builds it around a :class:`~service.runtime.Runtime`.

``create_app`` is imported on first use: the runtime (the wiring point) imports this
package's indexes, and the app imports the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
