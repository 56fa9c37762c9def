"""The wire: CBOR codec for Raft messages, length-prefixed frames, trio stream helpers.

``codec`` turns the dataclasses of ``raftsql.raft.messages`` into compact CBOR arrays and
back (checking every field); ``framing`` delimits frames on a byte stream with a size limit.
The client imports only this package's codec, framing and errors.
"""

from raftsql.net.errors import FrameTooLarge, MalformedFrame, ProtocolError

__all__ = ["FrameTooLarge", "MalformedFrame", "ProtocolError"]
