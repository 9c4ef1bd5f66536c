"""Discovery: the classic "Redes II práctica 3" directory of users, server and client.

``codec`` (sans-IO grammar) and ``framing`` (sans-IO request framing and timers) are shared by
``server`` (``vcall-discovery``, with ``connection``, ``directory``, ``store``, ``throttle``),
``embedded`` (the same server on a thread) and ``client`` (``DiscoveryClient``); ``cli`` is
``vcall discovery``. See docs/architecture.md, "Discovery", and docs/protocol.md, section 1.
"""
