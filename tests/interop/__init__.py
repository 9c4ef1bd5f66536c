"""Interop tests: real ffmpeg and GStreamer against vcall."""
