"""Discovery: the classic "Redes II práctica 3" directory of users, server and client.

``codec`` (sans-IO grammar) and ``framing`` (sans-IO request framing and timers) are shared by
``server`` (``vcall-discovery``, with ``connection``, ``directory``, ``throttle`` and the
stores behind ``backend``: ``store`` for SQLite, ``redis_store`` for several instances on one
Redis, ``records`` validating what comes back from it), ``embedded`` (the same server on a
thread) and ``client`` (``DiscoveryClient``, with failover across a ``ServerGroup``); ``cli``
is ``vcall discovery``; ``mdns`` announces and finds directories on the LAN (mDNS/DNS-SD,
``_vcall-dir._tcp.local.``). See docs/architecture.md, "Discovery", docs/protocol.md, section 1,
and docs/deploy.md.
"""
