"""The HTTP scoring service (``frozenasd serve``): fitted models loaded once, scoring uploads on demand.

:mod:`~frozenasd.service.config` holds the settings and checks them (a token is required off loopback);
:mod:`~frozenasd.service.registry` loads the models (encoders shared) and scores an uploaded file;
:mod:`~frozenasd.service.guard` is the ASGI layer that refuses requests without the token and bodies
over the size limit before any route runs; :mod:`~frozenasd.service.metrics` counts for ``/metrics``;
:mod:`~frozenasd.service.app` builds the FastAPI application and :mod:`~frozenasd.service.server` runs
it under uvicorn. FastAPI, uvicorn and python-multipart are the ``serve`` extra; this package's
``__init__`` imports none of them.
"""

from __future__ import annotations

from frozenasd.service.config import ServiceConfig

__all__ = ["ServiceConfig"]
