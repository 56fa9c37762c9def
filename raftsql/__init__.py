"""raftsql: a replicated SQL database. SQLite statements replicated through Raft.

The package is also its DB-API 2.0 (PEP 249) module, like ``sqlite3``::

    import raftsql
    conn = raftsql.connect("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")

The driver lives in ``raftsql.dbapi`` (see its docstring for the transaction rules); its
public names are re-exported here so that ``raftsql`` itself carries ``apilevel``,
``threadsafety``, ``paramstyle``, ``connect``, the exceptions and the type constructors.
"""

from raftsql.dbapi import *  # noqa: F403  (the PEP 249 names, listed in dbapi.__all__)
from raftsql.dbapi import __all__ as _dbapi_names

__version__ = "0.1.0"

__all__ = [*_dbapi_names, "__version__"]
