#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages vcall needs, where they are missing.
#   scripts/system-deps.sh run    what running the client needs
#   scripts/system-deps.sh test   that, plus what the test suite needs (Xvfb, ffmpeg, GStreamer)
# As root it runs apt-get; otherwise it names the missing packages and how to install them.
# Idempotent: with everything present it only checks, and prints nothing.
set -euo pipefail

profile="${1:-run}"
python="${PYTHON:-python3}"

required=()   # without these the chosen command cannot work
optional=()   # without these vcall works, but slower (said in its log)

if ! "$python" -c 'import tkinter' 2>/dev/null; then required+=(python3-tk); fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then required+=(python3-venv); fi
optional+=(libturbojpeg0)
# Audio: PortAudio (sounddevice) and libopus (real loss concealment and in-band FEC; without it
# concealment falls back to a fade). vcall still runs without them (video only), so optional.
optional+=(libportaudio2 libopus0)

if [ "$profile" = test ]; then
    # libav: avdec_h264; ugly: x264enc (the H.264 interop tests, both directions).
    # iproute2: ip and tc, for the impairment lab (tests/lab: network namespaces, tbf).
    # pulseaudio + libasound2-plugins (ALSA's pulse device, PortAudio's way to it) +
    # libportaudio2: the audio tests' private sound server with a null sink; pulseaudio-utils:
    # pactl (the fixture's null sink) and parec (recording what the ring plays).
    # redis-server, redis-sentinel: the directory tests on a real Redis and a Sentinel failover.
    # dbus, dunst: a real session bus and notification daemon for the desktop-notifier tests.
    # gnome-keyring: a real Secret Service for the remembered-password tests (keyring).
    # x11-utils: xprop, to read the window icon back from the X server.
    # gstreamer1.0-plugins-bad: srtpdec, GStreamer decrypting a call's SRTP (docs/interop.md).
    required+=(xvfb xdotool ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-base
               gstreamer1.0-plugins-good gstreamer1.0-libav gstreamer1.0-plugins-ugly
               gstreamer1.0-plugins-bad
               libturbojpeg0 iproute2 pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 libopus0
               redis-server redis-sentinel dbus dunst gnome-keyring x11-utils)
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-deps: not a Debian/Ubuntu system; make sure these are installed:" \
         "${required[*]} ${optional[*]}" >&2
    exit 0
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
missing_required=()
for pkg in "${required[@]}" "${optional[@]}"; do
    if ! is_installed "$pkg" && [[ ! " ${missing[*]} " =~ " $pkg " ]]; then
        missing+=("$pkg")
        if [[ " ${required[*]} " =~ " $pkg " ]]; then missing_required+=("$pkg"); fi
    fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    echo "system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi

echo "system-deps: missing system packages: ${missing[*]}" >&2
echo "system-deps: install them with:  sudo apt-get install ${missing[*]}" >&2
if [ ${#missing_required[@]} -gt 0 ]; then
    echo "system-deps: cannot continue without: ${missing_required[*]}" >&2
    exit 1
fi
echo "system-deps: continuing; without them vcall falls back (OpenCV JPEG: slower; no audio)." >&2
