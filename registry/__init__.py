"""mreg's core library: the content-addressed store, the catalog and the upstream clients.

The CLI (`cli/`) and the daemon (`daemon/`) are thin shells over this package.
"""

__version__ = "0.1.0"
