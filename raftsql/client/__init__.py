"""The synchronous client (no event loop: scripts, threads and notebooks alike)."""

from raftsql.client.client import Client, Result, parse_hosts

__all__ = ["Client", "Result", "parse_hosts"]
