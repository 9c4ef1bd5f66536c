"""Raw picture formats in the pipeline: packed BGR and planar I420.

API::

    class PixelFormat(IntEnum): BGR24 = 0, I420 = 1
    def raw_shape(fmt, width, height) -> tuple[int, ...]   # the numpy shape of one picture
    def can_hold(fmt, width, height) -> bool               # I420 needs even sizes
    def to_bgr(image, fmt) -> (H, W, 3) uint8              # a BGR picture (the same one if BGR)
    def shrink_to_rgb(image, fmt, dst) -> None             # any picture -> RGB at dst's size
    def picture_size(image) -> (width, height)             # of a BGR or I420 array
    def i420_planes(i420, width, height) -> (y, u, v)      # views of the three planes

Shapes:

- ``BGR24``: (H, W, 3) uint8, OpenCV's native order (what cameras and files give through
  OpenCV, and what JPEG encoders take).
- ``I420``: (H * 3 // 2, W) uint8: the Y plane (H rows of W), then U and V (each W/2 x H/2,
  stored as H/4 rows of W), BT.601 limited range. This is OpenCV's ``COLOR_*_I420`` layout and
  FFmpeg's ``yuv420p`` with no row padding, so one contiguous buffer is what an H.264 encoder
  takes without a conversion (libwebrtc's I420Buffer is the same picture). Sizes must be even
  (4:2:0 sampling, H.264 6.2).

A source writes whichever format its codec takes first (``CodecInfo.raw_formats``); the raw
ring's descriptor says which (``Descriptor.pixel_format``), and readers that need the other one
convert (``to_bgr``).
"""

from __future__ import annotations

import enum

import cv2
import numpy as np
import numpy.typing as npt

U8Array = npt.NDArray[np.uint8]


class PixelFormat(enum.IntEnum):
    """A raw picture's layout in a ring slot (the value travels in the slot header)."""

    BGR24 = 0
    I420 = 1


def can_hold(fmt: PixelFormat, width: int, height: int) -> bool:
    """True if a width x height picture can be stored as ``fmt`` (I420: even, positive sizes)."""
    if width <= 0 or height <= 0:
        return False
    return fmt is PixelFormat.BGR24 or (width % 2 == 0 and height % 2 == 0)


def raw_shape(fmt: PixelFormat, width: int, height: int) -> tuple[int, ...]:
    """The numpy shape of a width x height picture in ``fmt``; ValueError if it cannot be."""
    if not can_hold(fmt, width, height):
        raise ValueError(f"{width}x{height} cannot be stored as {fmt.name}")
    if fmt is PixelFormat.I420:
        return (height * 3 // 2, width)
    return (height, width, 3)


def picture_size(image: U8Array) -> tuple[int, int]:
    """(width, height) of a BGR (H, W, 3) or I420 (H*3/2, W) picture, told apart by ndim."""
    if image.ndim == 2:
        return image.shape[1], image.shape[0] * 2 // 3
    return image.shape[1], image.shape[0]


def to_bgr(image: U8Array, fmt: PixelFormat) -> U8Array:
    """The picture as BGR (H, W, 3): ``image`` itself when it already is, else a new array."""
    if fmt is PixelFormat.BGR24:
        return image
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)


def shrink_to_rgb(image: U8Array, fmt: PixelFormat, dst: U8Array) -> None:
    """Scale a picture into ``dst`` (h, w, 3) uint8 RGB (a self view: usually much smaller).

    I420 is scaled plane by plane and converted at the small size, so a thumbnail never pays
    for a full-size conversion. INTER_AREA while the picture shrinks by at most 2x, else
    INTER_LINEAR (1-2 ms against 0.05 ms per 720p frame when shrinking 8x: for a thumbnail the
    cheaper filter's aliasing is an acceptable trade).
    """
    h, w = dst.shape[:2]
    width, height = picture_size(image)
    interpolation = cv2.INTER_AREA if 2 * w >= width else cv2.INTER_LINEAR
    if fmt is PixelFormat.BGR24:
        cv2.resize(image, (w, h), dst=dst, interpolation=interpolation)
        cv2.cvtColor(dst, cv2.COLOR_BGR2RGB, dst=dst)
        return
    # A small I420 picture at an even size no smaller than dst, converted, then (odd sizes
    # only) scaled by the last pixel to dst.
    ew, eh = w + (w & 1), h + (h & 1)
    small = np.empty((eh * 3 // 2, ew), dtype=np.uint8)
    y_in, u_in, v_in = i420_planes(image, width, height)
    y_out, u_out, v_out = i420_planes(small, ew, eh)
    cv2.resize(y_in, (ew, eh), dst=y_out, interpolation=interpolation)
    cv2.resize(u_in, (ew // 2, eh // 2), dst=u_out, interpolation=interpolation)
    cv2.resize(v_in, (ew // 2, eh // 2), dst=v_out, interpolation=interpolation)
    if (ew, eh) == (w, h):
        cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420, dst=dst)
    else:
        rgb = cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420)
        cv2.resize(rgb, (w, h), dst=dst, interpolation=cv2.INTER_AREA)


def i420_planes(i420: U8Array, width: int, height: int) -> tuple[U8Array, U8Array, U8Array]:
    """The Y (height, width), U and V (height/2, width/2) planes of an I420 picture, as views
    (ValueError for an array that is not one contiguous block: the planes would be a copy)."""
    if not i420.flags.c_contiguous:
        raise ValueError("an I420 picture must be one contiguous block")
    flat = i420.reshape(-1)
    y_end = width * height
    c = y_end // 4
    y = flat[:y_end].reshape(height, width)
    u = flat[y_end : y_end + c].reshape(height // 2, width // 2)
    v = flat[y_end + c : y_end + 2 * c].reshape(height // 2, width // 2)
    return y, u, v
