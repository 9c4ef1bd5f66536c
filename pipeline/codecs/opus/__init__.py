"""Opus (RFC 6716) over RTP (RFC 7587): the codec (``codec.py``, libopus through PyAV, PLC and
FEC through ``libopus.py``), the packet checks (``toc.py``) and the payload format
(``rfc7587.py``)."""
