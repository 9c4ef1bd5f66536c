"""English and Spanish through gettext (issue 15): the catalogue covers every translatable
string, the language follows the config or the system locale, and a real window under Xvfb
speaks Spanish from login to the main screen (read from its widgets, screenshots kept)."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from babel.messages.pofile import read_po

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client
from tests.gui.test_call_gui import log_in
from vcall.config import Config, ConfigError, parse_config_bytes
from vcall.gui import app as gui_app
from vcall.gui import i18n

GUI_DIR = Path(i18n.__file__).parent


def translatable() -> set[str]:
    """Every literal passed to _() in vcall/gui."""
    found = set()
    for path in GUI_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "_" and node.args
            ):  # fmt: skip
                assert isinstance(node.args[0], ast.Constant), f"{path}: _() of a non-literal"
                found.add(node.args[0].value)
    return found


def test_the_spanish_catalogue_covers_every_string_and_nothing_else() -> None:
    with open(i18n.catalogue_path("es"), "rb") as fh:
        catalog = read_po(fh, locale="es")
    entries = {str(m.id): str(m.string) for m in catalog if m.id}
    strings = translatable()
    assert len(strings) > 30
    assert strings - set(entries) == set(), "strings without a Spanish entry"
    assert set(entries) - strings == set(), "stale entries no _() uses any more"
    for source, spanish in entries.items():
        assert (spanish and spanish != source) or source in {"Nick"}, source
        # Placeholders survive translation ({missed} is filled in after the lookup).
        assert re.findall(r"{\w+}", source) == re.findall(r"{\w+}", spanish), source


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        ("es", {"LANG": "en_US.UTF-8"}, "es"),  # the config wins
        ("en", {"LANG": "es_ES.UTF-8"}, "en"),
        ("", {"LANG": "es_ES.UTF-8"}, "es"),
        ("system", {"LANG": "es_MX"}, "es"),
        ("", {"LC_ALL": "C.UTF-8", "LANG": "es_ES.UTF-8"}, "en"),  # LC_ALL before LANG
        ("", {"LC_MESSAGES": "es_AR.UTF-8", "LANG": "en_GB"}, "es"),
        ("", {"LANGUAGE": "fr:es", "LANG": "en_US"}, "es"),  # GNU LANGUAGE: first one we have
        ("", {"LANG": "fr_FR.UTF-8"}, "en"),  # no French: English
        ("", {}, "en"),
    ],
)
def test_the_language_comes_from_the_config_or_the_locale(
    setting: str, environ: dict[str, str], expected: str
) -> None:
    assert i18n.choose_language(setting, environ) == expected


def test_translation_lookups_and_fallbacks() -> None:
    try:
        assert i18n.install("es") == "es"
        assert i18n._("Hang up") == "Colgar"
        assert i18n._("Recent calls ● {missed} missed").format(missed=3).endswith("3 perdidas")
        assert i18n._("a string nobody translated") == "a string nobody translated"
    finally:
        assert i18n.install("en") == "en"
    assert i18n._("Hang up") == "Hang up"


def test_language_in_the_config_file_and_on_the_command_line() -> None:
    assert parse_config_bytes(b'[look]\nlanguage = "ES"\n').language == "es"
    with pytest.raises(ConfigError, match="unknown language"):
        parse_config_bytes(b'[look]\nlanguage = "klingon"\n')
    parser = argparse.ArgumentParser()
    gui_app.add_arguments(parser)
    config = gui_app.build_config(
        parser.parse_args(["--language", "es", "--config", "/nonexistent"])
    )
    assert config.language == "es"
    with pytest.raises(SystemExit):
        parser.parse_args(["--language", "xx"])


@pytest.fixture
def spanish(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Client]:
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, language="es")
    client = Client(config, tmp_path / "ana.json", geometry="1100x640+0+0")
    try:
        yield client
    finally:
        client.close()
        i18n.install("en")  # widgets built later in this process speak English again


@pytest.mark.gui
@pytest.mark.usefixtures("no_leaks")
def test_a_spanish_window_from_login_to_the_main_screen(
    spanish: Client, discovery_server: DiscoveryProcess, screenshot: Callable[[str], np.ndarray]
) -> None:
    app = spanish.app
    assert app.language == "es"
    assert app.login.button.cget("text") == "Registrarse y entrar"
    screenshot("login-es")
    log_in(spanish, "ana", discovery_server)
    main = app.main
    assert main.call_button.cget("text") == "Llamar"
    assert main.refresh_button.cget("text") == "Actualizar"
    assert main.logout_button.cget("text") == "Cerrar sesión"
    assert str(main.tabs.tab(0, "text")) == "Usuarios"
    assert app.menus.bar.entrycget(3, "label") == "Ayuda"
    assert app.call.hangup_button.cget("text") == "Colgar"
    screenshot("main-es")
