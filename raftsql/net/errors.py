"""What the wire layer raises when a peer or client sends something it cannot accept.

All are ``ValueError``s: the input was bad, not the program. They are raised per frame, and
the stream stays usable after each of them (see ``FrameDecoder``), so a server answers the
one bad request with an error and keeps serving the connection.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(ValueError):
    """A frame or message that does not follow the protocol (bad shape, type or tag)."""

    def __init__(self, message: str, *, decoded: list[Any] | None = None) -> None:
        super().__init__(message)
        self.decoded: list[Any] = decoded if decoded is not None else []
        """Frames decoded successfully before this error in the same ``feed`` call, so
        nothing good is lost when the caller handles the error."""


class FrameTooLarge(ProtocolError):
    """A length prefix above the configured maximum (raised before the body is read)."""

    def __init__(self, size: int, max_size: int, *, decoded: list[Any] | None = None) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds the maximum of {max_size} bytes", decoded=decoded
        )
        self.size = size
        self.max_size = max_size


class MalformedFrame(ProtocolError):
    """A frame whose body is not exactly one valid CBOR item (or a stream cut mid-frame)."""
