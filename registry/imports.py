"""Importing a module whose objects live as long as the process, without the collector walking them."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType


def import_for_good(name: str) -> ModuleType:
    """Import module ``name`` with the cyclic garbage collector paused, then frozen out of what it built.

    What a command's import builds (aiohttp, SQLAlchemy: tens of thousands of objects) lives until the process
    ends; collections while importing walk it again and again, and so would later ones and the one at exit
    (together 0.25-0.45 s of ``mreg pull``'s CPU, issue #16). What lives when it freezes is never collected:
    this suits a command's process, not a long-lived one.
    """
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()
