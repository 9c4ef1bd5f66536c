"""Whose fault an error is: one vocabulary for discovery, call control and the media pipeline.

API::

    class VcallError(Exception)                         # base of every error vcall raises
    class RemoteProtocolError(VcallError)               # garbage from a peer (or a file/tool)
    class LocalProtocolError(VcallError, ValueError)    # our own misuse: bad arguments, a
                                                        # message or frame we must not send

After h11's ``_util.py``: the two kinds never share a handler. At an edge, a
``RemoteProtocolError`` becomes a counted drop (a datagram), an error reply or a close (a TCP
peer); a ``LocalProtocolError`` is a bug or bad user input and propagates to the caller. Every
package derives its specific errors from one of the two (``RtpError``, ``JpegError``,
``V0Error``, ``CallUsageError``, ...), so ``except RemoteProtocolError`` at an edge catches all
the garbage a peer can send and nothing of ours. ``LocalProtocolError`` is also a ``ValueError``
(bad arguments are value errors); ``RemoteProtocolError`` deliberately is not.

This module sits at the bottom of the import graph: it imports nothing, and any package of the
project may import it.
"""

from __future__ import annotations


class VcallError(Exception):
    """Base of the errors vcall raises on purpose."""


class RemoteProtocolError(VcallError):
    """A peer (or a file, or a tool's output) gave us bytes we cannot use: its fault, not ours."""


class LocalProtocolError(VcallError, ValueError):
    """We were asked to do something invalid (bad arguments, a message we must not send)."""
