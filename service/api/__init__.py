"""The REST API: :func:`create_app` builds it around a :class:`~service.runtime.Runtime`."""

from service.api.app import create_app

__all__ = ["create_app"]
