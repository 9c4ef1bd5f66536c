"""The video sources the user can pick, as the pickers show them (words, not specs).

API::

    PATTERN_LABEL, SCREEN_LABEL, FILE_LABEL: str
    source_label(spec: str) -> str                   # "camera:/dev/video0" -> "Camera /dev/video0"
    source_choices(cameras: list[str]) -> dict[str, str]   # label -> spec, in menu order

Pure: no Tk. The specs are those of :func:`pipeline.sources.video.open_source`. "Video file…"
is not in the choices: the picker asks for a file and makes the spec itself.
"""

from __future__ import annotations

import os

PATTERN_LABEL = "Test pattern"
SCREEN_LABEL = "Screen (share)"
FILE_LABEL = "Video file…"
# The file chooser's filter and where it starts: what people keep video in.
VIDEO_FILETYPES = (
    ("Video files", "*.mp4 *.mkv *.webm *.avi *.mov *.m4v *.mpg *.mpeg *.ogv *.y4m"),
    ("All files", "*"),
)


def source_label(spec: str) -> str:
    """The picker's words for a source spec (an unknown spec is shown as it is)."""
    if spec == "pattern":
        return PATTERN_LABEL
    if spec == "screen":
        return SCREEN_LABEL
    if spec.startswith("screen:"):
        return f"Screen {spec[7:]} (share)"
    if spec.startswith("file:"):
        return f"File: {os.path.basename(spec[5:])}"
    if spec.startswith("camera:"):
        return f"Camera {spec[7:]}"
    return spec


def source_choices(cameras: list[str]) -> dict[str, str]:
    """Label -> spec: the test pattern, each camera, then the whole screen (needs a display:
    without one the screen is not offered)."""
    choices = {PATTERN_LABEL: "pattern"}
    choices.update({source_label(c): c for c in cameras})
    if os.environ.get("DISPLAY"):
        choices[SCREEN_LABEL] = "screen"
    return choices
