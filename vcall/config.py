"""The client's configuration file and its small remembered state.

Configuration: TOML in ``$XDG_CONFIG_HOME/vcall/config.toml`` (or ``~/.config/vcall/config.toml``),
read with :mod:`tomllib`; command-line flags override it (:func:`apply_overrides`)::

    [server]                 # no [server] host: the client starts an embedded server on loopback
    host = "discovery.example.org"
    port = 8000
    fallbacks = ["discovery2.example.org:8000"]  # tried in order when host stops answering

    [network]
    listen_port = 0          # TCP call-control port (0: any free port)
    media_port = 0           # UDP port video is received on (0: any free port)
    advertise_ip = "192.0.2.7"   # the address registered with the server (default: guessed)

    [media]
    source = "pattern"       # "pattern", "camera:0", "file:/path/video.mp4"
    preset = "medium"        # "low" | "medium" | "high" | "max"
    codec = "h264"           # use only this video codec, "h264" | "jpeg", any case
                             # (default: none, i.e. H264 then JPEG; flag: --codec)

    [call]
    ring_timeout = 30        # seconds an incoming call rings before it is denied

    [audio]
    input = "device"         # "device" (the default microphone), "device:NAME", "tone:440",
                             # "file:PATH.wav", "silence", or "off" (video-only calls)
    output = "device"        # "device", "device:NAME", "wav:PATH", "null" or "off"
                             # (vcall devices lists the devices; flags: --audio-in/--audio-out)
    volume = 100             # speaker volume in percent, 0..150 (the call screen's slider)

    [look]
    theme = "system"         # "system" (follows the desktop) | "light" | "dark"; flag: --theme
    language = "system"      # "system" (the locale: LANGUAGE, LC_ALL, LC_MESSAGES, LANG) |
                             # "en" | "es"; flag: --language

State: ``state.json`` beside the configuration holds the last nick and server, whether the
user ticked "remember password" (the password itself goes to the OS keyring, never to this
file: vcall/passwords.py; with no keyring it is not remembered, and a warning says why; a
password left in the file by an older version is moved to the keyring, or dropped, at the next
read), and the video codec preference last chosen in the client's "Video codec" selector. It
is written atomically with mode 0600; :func:`update_state` changes some fields and keeps the
others (the Tk thread and the client's worker both write it).

The video codec of the client at start (:func:`start_codecs`): ``--codec`` > ``[media] codec``
> the remembered choice > automatic (H264, else JPEG). The flag and the file pin it for every
start; a choice made in the client lasts for the session and is remembered for the starts
where neither names a codec.

The microphone and speaker (:func:`start_audio`), each on its own: ``--audio-in``/``--audio-out``
> ``[audio] input``/``output`` when they name anything but plain "device" > the choice made in
the client's Settings window (remembered as ``audio_in``/``audio_out``) > the system default.

Guarantees: a missing file gives the defaults; a malformed file raises :class:`ConfigError`
naming the file and the key; unknown keys are ignored with a warning (a newer config must not
stop an older client); a damaged state file is ignored (it is only a convenience).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from pipeline.presets import PRESET_NAMES
from vcall import passwords
from vcall.call.codec import validate_codecs
from vcall.call.policy import local_codecs, parse_codec_choice

logger = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 8000
CONFIG_NAME = "config.toml"
STATE_NAME = "state.json"
MAX_CONFIG_BYTES = 256 * 1024  # a config file is a few hundred bytes; more is not ours
# The state file is tiny; anything bigger is not ours.
_MAX_STATE_BYTES = 64 * 1024
# Orders update_state()'s read-modify-write between the threads of one process.
_STATE_LOCK = threading.Lock()


class ConfigError(ValueError):
    """The configuration file or a server address is malformed (the user's to fix)."""


@dataclass(frozen=True, slots=True)
class Config:
    server_host: str | None = None
    server_port: int = DEFAULT_SERVER_PORT
    listen_port: int = 0
    media_port: int = 0
    advertise_ip: str | None = None
    source: str = "pattern"
    preset: str = "medium"
    codec: str | None = None  # a registry name, upper case; None: vcall's default preference
    ring_timeout: float = 30.0
    theme: str = ""  # THEME_CHOICES, or "": not set (the remembered choice, else "system")
    language: str = ""  # LANGUAGE_CHOICES, or "": not set (the system locale)
    server_fallbacks: tuple[tuple[str, int], ...] = ()  # [server] fallbacks, in order
    # [audio] input / output: pipeline.audio specs ("device[:NAME]", "tone:HZ", "silence";
    # "device[:NAME]", "wav:PATH", "null"), or "off" for video-only calls
    audio_in: str = "device"
    audio_out: str = "device"
    audio_volume: float = 1.0  # [audio] volume / 100: the playout gain, 0.0..1.5

    @property
    def server(self) -> tuple[str, int] | None:
        """(host, port) of the configured server; None means "start an embedded one"."""
        return None if self.server_host is None else (self.server_host, self.server_port)


@dataclass(frozen=True, slots=True)
class State:
    nick: str = ""
    server: str = ""
    remember_password: bool = False
    password: str = ""
    codecs: tuple[str, ...] = ()  # the video codec preference chosen last; (): none remembered
    theme: str = ""  # the theme chosen last in the View menu; "": none remembered
    # The microphone / speaker chosen last in the Settings window: "device" (the system
    # default), "device:NAME" or "off"; "": none remembered (see start_audio)
    audio_in: str = ""
    audio_out: str = ""


APP_NAME = "vcall"


def config_dir() -> Path:
    """Where vcall keeps its configuration, state and call history: the platform's user
    config directory (platformdirs): ``$XDG_CONFIG_HOME/vcall`` or ``~/.config/vcall`` on
    Linux (XDG Base Directory Specification), ``~/Library/Application Support/vcall`` on macOS,
    ``%LOCALAPPDATA%\\vcall`` on Windows. A relative ``$XDG_CONFIG_HOME`` is invalid by the XDG
    specification ("all paths ... must be absolute") and ignored."""
    path = platformdirs.user_config_path(APP_NAME, appauthor=False)
    if not path.is_absolute():  # only a relative $XDG_CONFIG_HOME gives one: the default then
        path = Path.home() / ".config" / APP_NAME
    return path


def config_path() -> Path:
    return config_dir() / CONFIG_NAME


def state_path() -> Path:
    return config_dir() / STATE_NAME


# ------------------------------------------------------------ command-line value types
# argparse ``type=`` callables: a bad value becomes argparse's one-line usage error (exit 2),
# never a traceback from deep inside (a port of 99999 reaching bind()).


def port_arg(text: str) -> int:
    """A TCP/UDP port, 0..65535 (0: any free port)."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return port


def count_arg(text: str) -> int:
    """A positive whole number (a limit: connections, bytes, errors)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def seconds_arg(text: str) -> float:
    """A positive, finite number of seconds."""
    value = _float_arg(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def delay_arg(text: str) -> float:
    """A finite number of seconds, zero or more."""
    value = _float_arg(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def _float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value > 1e9:
        raise argparse.ArgumentTypeError(f"not a usable number of seconds: {text!r}")
    return value


def parse_server(text: str, default_port: int = DEFAULT_SERVER_PORT) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port); ConfigError otherwise."""
    text = text.strip()
    if not text:
        raise ConfigError("empty server address")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"bad server address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad server address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"bad server address {text!r}: no host")
    if not port_text:
        return host, default_port
    return host, _port(port_text, f"server address {text!r}")


def format_server(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(value: object, where: str) -> int:
    try:
        port = int(str(value), 10) if not isinstance(value, bool) else -1
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port must be an integer 0..65535, got {value!r}")
    return port


_SCHEMA: dict[str, dict[str, str]] = {
    # section -> key -> Config field
    "server": {"host": "server_host", "port": "server_port", "fallbacks": "server_fallbacks"},
    "network": {
        "listen_port": "listen_port",
        "media_port": "media_port",
        "advertise_ip": "advertise_ip",
    },
    "media": {"source": "source", "preset": "preset", "codec": "codec"},
    "call": {"ring_timeout": "ring_timeout"},
    "look": {"theme": "theme", "language": "language"},
    "audio": {"input": "audio_in", "output": "audio_out", "volume": "audio_volume"},
}
THEME_CHOICES = ("system", "light", "dark")
LANGUAGE_CHOICES = ("system", "en", "es")  # vcall/gui/locale has a catalogue for each but en


def _convert(field: str, value: Any, where: str) -> Any:
    if field in {"server_port", "listen_port", "media_port"}:
        return _port(value, where)
    if field == "server_fallbacks":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{where}: must be a list of "host:port" strings')
        return tuple(parse_server(v) for v in value)
    if field == "audio_volume":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 150:
            raise ConfigError(f"{where}: must be a percentage from 0 to 150, got {value!r}")
        return float(value) / 100
    if field == "ring_timeout":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
            raise ConfigError(f"{where}: must be a positive number of seconds, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    if field == "theme" and value.strip().lower() not in THEME_CHOICES:
        raise ConfigError(f"{where}: unknown theme {value!r}; one of {', '.join(THEME_CHOICES)}")
    if field == "theme":
        return value.strip().lower()
    if field == "language" and value.strip().lower() not in LANGUAGE_CHOICES:
        raise ConfigError(
            f"{where}: unknown language {value!r}; one of {', '.join(LANGUAGE_CHOICES)}"
        )
    if field == "language":
        return value.strip().lower()
    if field == "preset" and value not in PRESET_NAMES:
        raise ConfigError(f"{where}: unknown preset {value!r}; one of {', '.join(PRESET_NAMES)}")
    if field == "codec":
        try:
            return parse_codec_choice(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value.strip()


def parse_config(data: Mapping[str, Any], origin: str = "config") -> Config:
    """Build a Config from parsed TOML; ConfigError names ``origin`` and the bad key."""
    values: dict[str, Any] = {}
    for section, table in data.items():
        keys = _SCHEMA.get(section)
        if keys is None or not isinstance(table, Mapping):
            logger.warning("%s: ignoring unknown entry [%s]", origin, section)
            continue
        for key, value in table.items():
            field = keys.get(key)
            if field is None:
                logger.warning("%s: ignoring unknown key %s.%s", origin, section, key)
                continue
            values[field] = _convert(field, value, f"{origin}: {section}.{key}")
    return Config(**values)


def load_config(path: Path | None = None) -> Config:
    """Read the configuration file; the defaults when it does not exist."""
    path = config_path() if path is None else path
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes: not a vcall config")
    return parse_config_bytes(raw, str(path))


def parse_config_bytes(raw: bytes, origin: str = "config") -> Config:
    """Parse a config file's bytes (TOML, UTF-8). Raises only ConfigError, whatever the bytes:
    tomllib's errors (TOMLDecodeError, a ValueError), RecursionError on deeply nested arrays
    (``a=[[[[...``) and UnicodeDecodeError are all mapped to it (fuzzed; see tests)."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{origin}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply to be a vcall config") from None
    return parse_config(data, origin)


def apply_overrides(config: Config, **overrides: Any) -> Config:
    """Command-line values override the file; None means "not given on the command line"."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise TypeError(f"unknown config fields: {sorted(unknown)}")  # a programming error
    for field, value in given.items():
        given[field] = _convert(field, value, f"--{field.replace('_', '-')}")
    return dataclasses.replace(config, **given)


def start_theme(config: Config, state: State) -> str:
    """The theme at start: ``--theme`` > ``[look] theme`` > the one chosen last in the View
    menu > "system" (follow the desktop). As with the codec, a theme pinned by the flag or the
    file wins at every start; a menu choice then lasts for that session."""
    return config.theme or state.theme or "system"


MAX_AUDIO_CHOICE = 300  # characters of a remembered device choice ("device:" + a name)


def audio_choice_ok(choice: str) -> bool:
    """A remembered device choice: "" (none), "off", "device" or "device:NAME" (a PortAudio
    name, no control characters), at most MAX_AUDIO_CHOICE characters."""
    if len(choice) > MAX_AUDIO_CHOICE or not choice.isprintable():
        return False
    return choice in ("", "off", "device") or (choice.startswith("device:") and len(choice) > 7)


def start_audio(configured: str, remembered: str) -> str:
    """The audio input (or output) spec of the next call.

    ``configured``: ``--audio-in``/``--audio-out``, else ``[audio] input``/``output`` (the
    flag already applied by :func:`apply_overrides`; "device" when neither says anything);
    ``remembered``: the Settings window's choice (:class:`State`, "" for none). Precedence:
    a configured spec other than plain "device" (a named device, a tone, a file, "off") wins;
    otherwise the remembered choice; otherwise "device" (the system default). So the file and
    the flags win whenever they name something, and the window decides the rest."""
    if configured != "device":
        return configured
    return remembered or "device"


def start_codecs(config: Config, state: State) -> tuple[str, ...]:
    """The video codec preference at start: the flag or config file's codec (both in
    ``config.codec``, the flag winning), else the remembered choice, else automatic."""
    if config.codec is not None:
        return local_codecs(config.codec)
    return state.codecs or local_codecs(None)


def _state_codecs(value: object) -> tuple[str, ...]:
    """The remembered ``codecs`` list; ValueError unless known codecs, distinct, 1-8 of them."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"codecs: not a list of names: {value!r}")
    return validate_codecs([parse_codec_choice(name) for name in value])


def load_state(path: Path | None = None) -> State:
    """The remembered nick/server (and the password from the OS keyring if asked for); empty
    State when unreadable.

    A bad ``codecs`` entry alone is dropped (a newer client may know other codecs): the nick
    and server stay. Waits for the keyring at most passwords.TIMEOUT seconds."""
    state = _load_state(path, with_password=True)
    return state


def remembered_server(path: Path | None = None) -> str:
    """The remembered server alone: reads the file, never the keyring (no wait)."""
    return _load_state(path, with_password=False).server


def _load_state(path: Path | None, *, with_password: bool) -> State:
    path = state_path() if path is None else path
    try:
        if path.stat().st_size > _MAX_STATE_BYTES:
            raise ValueError("state file too large")
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        remember = data.get("remember_password") is True
        fields = (data.get("nick", ""), data.get("server", ""), "")
        if not all(isinstance(f, str) for f in fields):
            raise ValueError("bad field types")
        if "password" in data:  # written by a version before issue 14: in clear
            remember = _migrate_password(path, data, remember)
        if remember and with_password:
            fields = (fields[0], fields[1], passwords.fetch(passwords.account(*fields[:2])))
        codecs: tuple[str, ...] = ()
        if "codecs" in data:
            try:
                codecs = _state_codecs(data["codecs"])
            except ValueError as exc:
                logger.warning("%s: ignoring the remembered video codecs: %s", path, exc)
        theme = data.get("theme", "")
        if theme not in ("", *THEME_CHOICES):
            logger.warning("%s: ignoring the remembered theme %r", path, theme)
            theme = ""
        audio = [data.get(key, "") for key in ("audio_in", "audio_out")]
        for index, choice in enumerate(audio):
            if not isinstance(choice, str) or not audio_choice_ok(choice):
                logger.warning("%s: ignoring the remembered audio device %r", path, choice)
                audio[index] = ""
        return State(
            str(fields[0]), str(fields[1]), remember, str(fields[2]), codecs, theme, *audio
        )
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON "[[[[..."
        logger.warning("ignoring unreadable state file %s: %s", path, exc)
        return State()


def _migrate_password(path: Path, data: dict[str, Any], remember: bool) -> bool:
    """Move a plain password out of the state file: to the keyring if remembered and one is
    available, else dropped; the file is rewritten without it. Returns remember_password."""
    password = data.pop("password")
    name = passwords.account(str(data.get("nick", "")), str(data.get("server", "")))
    if remember and isinstance(password, str) and password and passwords.store(name, password):
        logger.warning("%s: moved the remembered password to the OS keyring", path)
    else:
        if remember:
            logger.warning(
                "%s: dropped the remembered password (kept in clear by an older version): %s",
                path, passwords.keyring_problem() or "not a valid password",
            )  # fmt: skip
        remember = False
    data["remember_password"] = remember
    try:
        _write_state_file(path, data)
    except OSError as exc:
        logger.warning("cannot rewrite %s without its password: %s", path, exc)
    return remember


def save_state(state: State, path: Path | None = None) -> None:
    """Write the state atomically, mode 0600, never with the password: a remembered password
    goes to the OS keyring (queued, the caller never waits for it; passwords.py), and with no
    keyring it is not remembered (``remember_password`` false, a warning says why). A
    remembered state with an empty password keeps what the keyring holds; unticking "remember"
    (or changing account) removes the previous account's password from the keyring."""
    path = state_path() if path is None else path
    remember = state.remember_password
    name = passwords.account(state.nick, state.server)
    if remember and state.password and not passwords.store(name, state.password):
        logger.warning("password not remembered: %s", passwords.keyring_problem())
        remember = False
    previous = _load_state(path, with_password=False)
    if previous.remember_password:
        old = passwords.account(previous.nick, previous.server)
        if not remember or old != name:
            passwords.forget(old)
    data: dict[str, Any] = {
        "nick": state.nick,
        "server": state.server,
        "remember_password": remember,
    }
    if state.codecs:
        data["codecs"] = list(state.codecs)
    if state.theme:
        data["theme"] = state.theme
    for key, choice in (("audio_in", state.audio_in), ("audio_out", state.audio_out)):
        if choice:
            data[key] = choice
    _write_state_file(path, data)


def _write_state_file(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def update_state(path: Path | None = None, **changes: Any) -> State:
    """Change some fields of the state file and keep the others; returns the state written.

    Serialised within the process, so the Tk thread (nick, server) and the client's worker
    (codecs) never undo each other's change. ``codecs`` is checked as :func:`load_state` will
    (a ValueError, and nothing written, otherwise); other fields are the caller's to get right.
    """
    for key in ("audio_in", "audio_out"):
        if key in changes and not audio_choice_ok(changes[key]):
            raise ValueError(f"{key}: not a device choice: {changes[key]!r}")
    if "codecs" in changes:
        codecs: Sequence[str] = changes["codecs"]
        changes["codecs"] = _state_codecs(list(codecs)) if codecs else ()
    with _STATE_LOCK:
        # Without the password: the keyring is not asked (this may run on the Tk thread), and
        # save_state keeps what it holds unless remember_password or the account changes.
        state = dataclasses.replace(_load_state(path, with_password=False), **changes)
        save_state(state, path)
    return state
