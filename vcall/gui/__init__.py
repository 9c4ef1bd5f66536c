"""The Tk client (`vcall`, `vcall demo`): widgets, a pure UI model, and a worker thread that owns
the call manager and media session, so that the Tk thread never waits on the network or the
pipeline. See docs/architecture.md, "Tk client"."""
