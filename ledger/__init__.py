"""provenance-ledger: a supply-chain provenance ledger.

The package is the domain core. Its pure part (``errors``, ``merkle``, ``verify``, ``tlog``,
``records``, ``trust``, ``attestation``, ``interop``) needs no database; ``ledger.db`` holds the
SQLAlchemy store and ``ledger.services`` the use cases. The README's "Map" names every folder. Nothing in ``ledger`` imports Flask, Celery or Redis (``ledger.cli`` imports the
``web`` and ``workers`` layers lazily, inside the commands that start them).
"""

__version__ = "0.1.0"
