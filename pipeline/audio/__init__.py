"""Audio: frames and the source/sink interfaces (``frames.py``), the jitter buffer
(``jitter.py``), sources and sinks (``sources.py``, ``sinks.py``, PortAudio devices in
``devices.py``), echo cancellation and noise suppression (``processing.py``), lip sync
(``sync.py``) and the audio path of a call (``path.py``). Layer 4 of pipeline/ (above the
codecs, beside the video jitter buffer and the stream layer); codecs are reached through the
registry, as ``path.AudioCodecParts``."""
