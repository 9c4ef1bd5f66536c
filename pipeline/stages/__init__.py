"""Stage processes: capture, encode, send, receive, display. Each is a thin loop (``base.Stage``)
around the pure cores; frames move between them through shared-memory rings."""
