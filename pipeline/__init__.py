"""vcall's media pipeline: capture, encode, send, receive and display as separate processes.

Pure cores (codecs, packetizers, jitter buffer, rings) are plain classes; each stage process is a
short loop around them. Nothing here imports the GUI or the call-control layer.
"""
