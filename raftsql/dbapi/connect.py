"""``connect()``: from a host list, a ``"h1:p1,h2:p2"`` string, a ``raftsql://`` URL, or
nothing at all (the embedded local cluster), to a Connection.

URL options (``raftsql://h1:p1,h2:p2?consistency=stale&timeout=5&autocommit=true``) set
the connection's defaults; keyword arguments given to connect() win over them. A URL
without hosts (``raftsql://?consistency=stale``) means the local cluster, like no DSN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from raftsql import errors
from raftsql.client.client import Client, parse_hosts
from raftsql.dbapi.connection import Connection, _translated, check_consistency
from raftsql.dbapi.exceptions import OperationalError, ProgrammingError

__all__ = ["connect"]

Hosts = str | Iterable[str | tuple[str, int]]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def connect(
    dsn: Hosts | None = None,
    *,
    hosts: Hosts | None = None,
    timeout: float | None = None,
    consistency: str | None = None,
    autocommit: bool | None = None,
) -> Connection:
    """Open a connection (PEP 249's constructor).

    ``dsn`` (or ``hosts=``): a list of ``"host:port"`` or ``(host, port)``, a
    ``"h1:p1,h2:p2"`` string, or a ``raftsql://h1:p1,h2:p2?option=value`` URL. Without
    one, the embedded local cluster in ``~/.raftsql/local`` (``$RAFTSQL_HOME``) is started,
    or reused if it runs already, as ``raftsql shell`` does; it keeps running after the
    connection closes (``raftsql cluster down`` stops it).

    ``timeout`` (seconds, default 10) bounds each request, retries through leader changes
    included. ``consistency`` is the default for reads ("linearizable" or "stale").
    ``autocommit`` (default False): see the package docstring for the transaction rules.

    One node must answer before connect() returns, so an unreachable cluster fails here
    (OperationalError) rather than at the first statement.
    """
    if dsn is not None and hosts is not None:
        raise ProgrammingError("give the hosts either as dsn or as hosts=, not both")
    target = dsn if dsn is not None else hosts
    options: dict[str, str] = {}
    if isinstance(target, str):
        target, options = _parse_dsn(target)
    timeout = float(_option(options, "timeout", timeout, 10.0))
    if not timeout > 0:
        raise ProgrammingError(f"timeout must be a positive number of seconds, not {timeout}")
    level = check_consistency(_option(options, "consistency", consistency, "linearizable"))
    auto = _option(options, "autocommit", autocommit, False)
    if options:
        raise ProgrammingError(
            f"unknown option {', '.join(sorted(options))} in the URL: "
            "use consistency, timeout or autocommit"
        )
    addresses = _local_cluster() if target in (None, "") else _addresses(target)
    client = Client(addresses, timeout=timeout, consistency=level)
    try:
        with _translated():
            client.status()
    except BaseException:
        client.close()
        raise
    return Connection(client, autocommit=auto, consistency=level)


def _parse_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """``raftsql://hosts?options`` -> (hosts, options); anything else is a host string."""
    text = dsn.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text, {}
    if scheme.lower() != "raftsql":
        raise ProgrammingError(f"unknown URL scheme {scheme!r}: use raftsql://h1:p1,h2:p2")
    hostpart, _, query = rest.partition("?")
    hostpart = hostpart.rstrip("/")
    if "/" in hostpart:
        raise ProgrammingError(f"a raftsql URL has no path: {dsn!r}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ProgrammingError(f"malformed options in {dsn!r}: {exc}") from None
    return hostpart, dict(pairs)


def _option(options: dict[str, str], name: str, given: Any, default: Any) -> Any:
    """A keyword given to connect() wins; then the URL's option; then the default."""
    text = options.pop(name, None)
    if given is not None:
        return given
    if text is None:
        return default
    if name == "timeout":
        try:
            return float(text)
        except ValueError:
            raise ProgrammingError(f"timeout={text!r} is not a number of seconds") from None
    if name == "autocommit":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ProgrammingError(f"autocommit={text!r}: use true or false")
    return text


def _addresses(hosts: Hosts) -> list[tuple[str, int]]:
    try:
        return parse_hosts(hosts)
    except errors.ParameterError as exc:
        raise ProgrammingError(exc.message, raftsql_error=exc) from exc
    except (TypeError, ValueError, IndexError) as exc:
        raise ProgrammingError(f"cannot read hosts {hosts!r}: {exc}") from exc


def _local_cluster() -> list[str]:
    """Start or reuse the local cluster in DEFAULT_DIR (read at call time, so a program
    or test can point it elsewhere). Imported here: only this path runs subprocesses."""
    from raftsql import cluster

    local = cluster.LocalCluster(directory=cluster.DEFAULT_DIR)
    try:
        local.start()
    except (OSError, TimeoutError) as exc:
        raise OperationalError(
            f"cannot start the local cluster in {cluster.DEFAULT_DIR}: {exc}"
        ) from exc
    return local.addresses()
