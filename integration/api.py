"""The Python API's public path (``from integration import api``, ``import integration.api``).

The module is the front end :mod:`integration.frontends.api`; this name is kept so callers'
imports never change, and it is that very module (not a copy), so its lazy attributes work.
"""
import sys

from integration.frontends import api as _api

sys.modules[__name__] = _api
