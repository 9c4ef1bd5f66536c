"""The client's languages: English (the source strings) and Spanish, through gettext.

API::

    LANGUAGES = ("en", "es")
    LOCALE_DIR: Path                             # vcall/gui/locale/<lang>/LC_MESSAGES/vcall.po
    choose_language(setting: str = "", environ=os.environ) -> str   # "en" or "es"
    install(language: str) -> str                # from now on _() translates into it
    _(message: str) -> str                       # the current language's text for message
    language() -> str                            # the language installed now

Which language: ``--language`` / ``[look] language`` ("en", "es"), else, for "" or "system",
the first of the GNU ``LANGUAGE`` list, ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set
(the POSIX precedence, with GNU gettext's LANGUAGE first) and names a language vcall has
("es_ES.UTF-8" and "es_MX" are Spanish); otherwise English. "C" and "POSIX" are English.

The catalogues are shipped as ``.po`` text (reviewable, diffable) and compiled in memory when
the language is installed, with Babel (``babel.messages.pofile.read_po`` and
``mofile.write_mo``), so no compiled ``.mo`` can go stale or be forgotten in a build; the cost
is one read of a small file at start. Strings are looked up when a widget is built, so install
the language before building the windows.

Guarantees: ``_`` never raises and returns ``message`` itself when the catalogue has no entry
(a missing translation shows English, not nothing); an unreadable catalogue logs a warning and
leaves English.
"""

from __future__ import annotations

import gettext
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "es")
DOMAIN = "vcall"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_current: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def choose_language(setting: str = "", environ: Mapping[str, str] = os.environ) -> str:
    """The language to show: ``setting`` if it names one, else the locale's, else English."""
    if setting in LANGUAGES:
        return setting
    candidates: list[str] = []
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable, "")
        if value:
            # LANGUAGE is a colon-separated preference list; the others are one locale.
            candidates += value.split(":") if variable == "LANGUAGE" else [value]
            if variable != "LANGUAGE":
                break
    for candidate in candidates:
        code = candidate.split(".")[0].split("@")[0].split("_")[0].lower()
        if code in LANGUAGES:
            return code
        if code in {"c", "posix"}:
            return "en"
    return "en"


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def load(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (English: none needed)."""
    if language == "en":
        return gettext.NullTranslations()
    # Imported here: only a translated client needs Babel.
    from babel.messages.mofile import write_mo  # noqa: PLC0415
    from babel.messages.pofile import read_po  # noqa: PLC0415

    try:
        with open(catalogue_path(language), "rb") as fh:
            catalog = read_po(fh, locale=language, domain=DOMAIN)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        return gettext.GNUTranslations(buffer)
    except (OSError, ValueError) as exc:
        logger.warning("no %s translation (%s): English", language, exc)
        return gettext.NullTranslations()


def install(language: str) -> str:
    """Translate into ``language`` from now on; returns the language installed."""
    global _current, _language  # noqa: PLW0603 - the one process-wide choice, as gettext's own
    _current = load(language)
    translated = type(_current) is not gettext.NullTranslations
    _language = language if language in LANGUAGES and (translated or language == "en") else "en"
    return _language


def _(message: str) -> str:
    """``message`` in the installed language."""
    return _current.gettext(message)


def language() -> str:
    return _language
