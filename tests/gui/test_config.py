"""vcall.config: the TOML file, flag overrides, and the state file (never the password unless
asked)."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcall.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigError,
    State,
    apply_overrides,
    config_dir,
    config_path,
    format_server,
    load_config,
    load_state,
    parse_config,
    parse_config_bytes,
    parse_server,
    save_state,
    start_codecs,
    start_theme,
    state_path,
    update_state,
)
from vcall.passwords import keyring_problem


def test_config_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_dir() == tmp_path / "vcall"
    assert config_path() == tmp_path / "vcall" / "config.toml"
    assert state_path() == tmp_path / "vcall" / "state.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config_dir() == Path.home() / ".config" / "vcall"
    # A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
    monkeypatch.setenv("XDG_CONFIG_HOME", "rel")
    assert config_dir() == Path.home() / ".config" / "vcall"


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "none.toml")
    assert config == Config()
    assert config.server is None  # no server: the client starts an embedded one


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        """
[server]
host = "disc.example.org"
port = 8001
[network]
listen_port = 9000
media_port = 9100
advertise_ip = "192.0.2.7"
[media]
source = "camera:0"
preset = "high"
codec = "h264"
[call]
ring_timeout = 12
[future]
thing = 1
"""
    )
    config = load_config(path)
    assert config.server == ("disc.example.org", 8001)
    assert (config.listen_port, config.media_port) == (9000, 9100)
    assert config.advertise_ip == "192.0.2.7"
    assert (config.source, config.preset, config.ring_timeout) == ("camera:0", "high", 12.0)
    assert config.codec == "H264"  # any case in the file, the registry's name in the Config


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[media]\npreset = 'ultra'\n", "media.preset"),
        ("[media]\ncodec = 'vp8'\n", "media.codec"),
        ("[media]\ncodec = 264\n", "media.codec"),
        ("[media]\ncodec = ''\n", "media.codec"),
        ("[call]\nring_timeout = -1\n", "call.ring_timeout"),
        ("[server\n", "config.toml"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(path)


def test_flags_override_the_file() -> None:
    base = Config(server_host="a", server_port=1, preset="low")
    merged = apply_overrides(base, server_host="b", preset="max", source=None)
    assert merged.server == ("b", 1)
    assert merged.preset == "max"
    assert merged.source == base.source  # None: not given
    with pytest.raises(ConfigError):
        apply_overrides(base, preset="nope")


def test_codec_flag_overrides_the_file_and_defaults_to_no_preference() -> None:
    assert Config().codec is None  # vcall's default list (H264, then JPEG)
    base = Config(codec="H264")
    assert apply_overrides(base, codec="Jpeg").codec == "JPEG"
    assert apply_overrides(base, codec=None).codec == "H264"  # flag not given: the file's
    with pytest.raises(ConfigError, match=r"--codec.*h264, jpeg"):
        apply_overrides(base, codec="vp8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", ("host", 8000)),
        ("host:81", ("host", 81)),
        (" 10.0.0.1:9 ", ("10.0.0.1", 9)),
        ("[::1]:82", ("::1", 82)),
        ("[::1]", ("::1", 8000)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected
    assert parse_server(format_server(*expected)) == expected


@pytest.mark.parametrize("text", ["", ":80", "h:x", "h:70000", "[::1", "[::1]x", "a b:1"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_server(text)


@given(st.text(max_size=40))
def test_parse_server_never_crashes(text: str) -> None:
    try:
        host, port = parse_server(text)
    except ConfigError:
        return
    assert host and 0 <= port <= 65535


def test_state_never_stores_password_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "vcall" / "state.json"
    save_state(State("alice", "h:1", remember_password=False, password="s3cret"), path)
    raw = path.read_text()
    assert "s3cret" not in raw
    assert json.loads(raw) == {"nick": "alice", "server": "h:1", "remember_password": False}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_state(path) == State("alice", "h:1", False, "")

    # Remembered: in the OS keyring (vcall.passwords), never in the file (issue 14).
    save_state(State("alice", "h:1", remember_password=True, password="s3cret"), path)
    assert "s3cret" not in path.read_text()
    if keyring_problem():  # no keyring here (a headless box): nothing is remembered
        assert load_state(path) == State("alice", "h:1", False, "")


@pytest.mark.parametrize(
    "content", ["", "not json", "[1]", '{"nick": 3}', '{"nick": "a", "password": "x"}']
)
def test_damaged_state_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    state = load_state(path)
    assert state.password == ""  # a password without remember_password is never loaded
    assert state in (State(), State(nick="a"))


@given(st.binary(max_size=200))
def test_state_file_of_arbitrary_bytes_never_raises(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    path.write_bytes(data)
    state = load_state(path)
    assert isinstance(state, State)
    assert state.password == "" or state.remember_password


_toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["server", "network", "media", "call", "x"]), _toml_values))
def test_parse_config_raises_only_config_error(data: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data)


def test_state_remembers_the_codec_choice_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path).codecs == ()  # nothing remembered
    update_state(path, codecs=("JPEG",))
    assert json.loads(path.read_text())["codecs"] == ["JPEG"]
    update_state(path, nick="alice", server="h:1")  # the login keeps the codec choice
    update_state(path, codecs=("H264", "JPEG"))  # and the codec choice keeps the login
    assert load_state(path) == State("alice", "h:1", codecs=("H264", "JPEG"))
    update_state(path, codecs=())  # forgotten: no key at all
    assert "codecs" not in json.loads(path.read_text()) and load_state(path).nick == "alice"
    for bad in (("VP8",), ("JPEG", "JPEG"), "JPEG"):
        with pytest.raises(ValueError):
            update_state(path, codecs=bad)
    assert load_state(path) == State("alice", "h:1")  # nothing written


@pytest.mark.parametrize("codecs", ['"JPEG"', '["VP8"]', "[]", '["JPEG", "JPEG"]', "[1]", "null"])
def test_a_bad_remembered_codec_list_alone_is_dropped(tmp_path: Path, codecs: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(f'{{"nick": "alice", "server": "h:1", "codecs": {codecs}}}')
    assert load_state(path) == State("alice", "h:1")


def test_remembered_codecs_are_read_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"codecs": ["jpeg", "H264"]}')
    assert load_state(path).codecs == ("JPEG", "H264")


def test_codec_precedence_flag_then_file_then_remembered_then_automatic(tmp_path: Path) -> None:
    toml = tmp_path / "config.toml"
    toml.write_text('[media]\ncodec = "h264"\n')
    remembered = State(codecs=("JPEG",))
    file_only = load_config(toml)
    flag_and_file = apply_overrides(file_only, codec="jpeg")
    assert start_codecs(flag_and_file, State(codecs=("H264", "JPEG"))) == ("JPEG",)  # flag
    assert start_codecs(file_only, remembered) == ("H264",)  # the file over the remembered
    assert start_codecs(Config(), remembered) == ("JPEG",)  # the remembered choice
    assert start_codecs(apply_overrides(Config(), codec="h264"), remembered) == ("H264",)
    assert start_codecs(Config(), State()) == ("H264", "JPEG")  # automatic


@pytest.mark.parametrize(
    "raw",
    [
        b"a=" + b"[" * 500,  # tomllib recurses once per bracket: RecursionError, mapped
        b"a=" + b"{x=" * 500,
        b"\xff\xfe[server]",
        b"[server]\nport = 1979-05-27T07:32:00Z",
        b"[server]\nport = \xc2\xb2",
    ],
)
def test_malformed_config_files_raise_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_oversized_config_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


@given(st.binary(max_size=600))
def test_config_bytes_raise_only_config_error(raw: bytes) -> None:
    with contextlib.suppress(ConfigError):  # anything else fails the test
        parse_config_bytes(raw)


@given(
    st.recursive(
        st.sampled_from(["[", "{x=", "1", '"s"', "]", "}", ",", "\n", "[server]", "port="]),
        lambda inner: st.lists(inner, max_size=8).map("".join),
        max_leaves=400,
    )
)
def test_toml_like_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):  # anything else fails the test
        parse_config_bytes(("a=" + text).encode())


def test_theme_precedence_flag_then_file_then_remembered_then_system(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    assert start_theme(Config(), load_state(state_file)) == "system"
    update_state(state_file, theme="dark")
    assert load_state(state_file).theme == "dark"
    assert start_theme(Config(), load_state(state_file)) == "dark"
    path = tmp_path / "config.toml"
    path.write_text('[look]\ntheme = "Light"\n')
    pinned = load_config(path)
    assert pinned.theme == "light" and start_theme(pinned, load_state(state_file)) == "light"
    flagged = apply_overrides(pinned, theme="dark")
    assert start_theme(flagged, load_state(state_file)) == "dark"
    path.write_text('[look]\ntheme = "purple"\n')
    with pytest.raises(ConfigError, match="unknown theme"):
        load_config(path)


def test_a_bad_remembered_theme_alone_is_dropped(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({"nick": "alice", "server": "h:1", "theme": ["x"]}))
    state = load_state(state_file)
    assert state.theme == "" and state.nick == "alice"
