"""provenance-ledger: a supply-chain provenance ledger.

The package is the domain core. Its pure part (``errors``, ``hashing``, ``merkle``, ``note``,
``checkpoint``, ``dsse``, ``statement``, ``keys``, ``verify``) needs only the standard library,
``cryptography`` and ``pynacl``; ``ledger.db`` holds the SQLAlchemy store and ``ledger.services``
the use cases. Nothing in ``ledger`` imports Flask, Celery or Redis (``ledger.cli`` imports the
``web`` and ``workers`` layers lazily, inside the commands that start them).
"""

__version__ = "0.1.0"
