"""raftsql: a replicated SQL database. SQLite statements replicated through Raft."""

__version__ = "0.1.0"
