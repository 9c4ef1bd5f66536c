"""vcall: 1:1 video calls with a Tk client, a discovery server, TCP call control and UDP video."""

__version__ = "0.1.0"

# Protocol versions vcall registers: classic V0 first (some classic callees deny a caller whose
# protocols lack V0), then vcall's own extension (RTP/JPEG media, SSRC token, heartbeat).
# Never "V1": other clients of the family used it for incompatible extensions.
CLASSIC_VERSION = "V0"
EXTENSION_VERSION = "V2435"
PROTOCOLS: tuple[str, ...] = (CLASSIC_VERSION, EXTENSION_VERSION)
