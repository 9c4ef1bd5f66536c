"""The impairment lab: two hosts on either side of a router that damages their traffic.

Modules, from the bottom up:

- ``profiles``: named network conditions (pure data).
- ``impairment``: the loss/delay/jitter/reorder/duplicate/cut model, without I/O.
- ``control``: the impairer's JSON-line control protocol, without I/O.
- ``impairer``: the process inside the router namespace that forwards through a TUN device.
- ``errors``: ``LabError``, the one exception vocabulary of the lab.
- ``namespaces``: ``ip netns`` plumbing, killing, the stale sweep, sockets inside a namespace.
- ``reaper``: removes a lab's namespaces when its owner dies without closing it.
- ``client``: the lab's end of the impairer's control pipe.
- ``timeline``: rate steps and cuts played at their times.
- ``lab``: :class:`~benchmarks.netlab.lab.Lab`, which builds, drives and removes all of it.
- ``probe``: paced UDP flows and echo round trips measured through a lab.

Importing this package imports nothing else (the reaper and the impairer start fast).
"""
