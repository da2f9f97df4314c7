"""What every page run does first and what keeps a page's settings: the routing through the
entrypoint, the deployment's mode and limits, this browser session's token, widget values kept
across pages (and in the page's link), and the artifacts folder that keys every cache.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from leukdash import paths

LINK_NOTE = "_link_note"  # session: this run's place for the values of the page's link not used, and what it says


# --------------------------------------------------------------------------- routing


def routed(page_file: str) -> None:
    """Send a run of a page that skipped ``streamlit_app.py`` back through it.

    Because a ``pages/`` folder exists, Streamlit (1.67) serves the first script run of a fresh
    server process in its old multipage mode until ``st.navigation`` has been called once: a
    deep link such as ``/compare`` then runs the page file alone, without the page setup and
    with every file of ``pages/`` in the menu. The entrypoint marks the session; an unmarked
    run goes through the entrypoint, which then switches to the page asked for.

    Every run of a page starts here, so here it keeps the place at the top of the sidebar where
    the run says which values of the page's link were replaced (:func:`link_note`).
    """
    if not st.session_state.get("_routed"):
        st.session_state["_deep_link"] = f"pages/{Path(page_file).name}"
        st.session_state["_deep_query"] = {key: st.query_params.get_all(key) for key in st.query_params}
        st.switch_page("streamlit_app.py")
    st.session_state[LINK_NOTE] = (st.sidebar.empty(), [])


# --------------------------------------------------------------------------- deployment


def deployment():
    """The deployment mode and limits: environment variables first, then ``st.secrets``.

    Raises ConfigError (one line) for a value not allowed, or a secrets file that cannot be
    parsed (Streamlit reports that as a missing file: its settings, viewer mode say, would be
    silently ignored); the entrypoint shows it and stops.
    """
    from leukdash.errors import ConfigError
    from leukdash.service.deployment import read_deployment

    unreadable = ("the app's secrets.toml cannot be read ({}): fix or remove it; until then the settings in it "
                  "(mode, limits) would be ignored")
    try:
        secrets = {key: st.secrets[key] for key in st.secrets}
    except FileNotFoundError as error:  # no secrets.toml: environment and defaults only
        if getattr(error, "error_id", None) == "failed-parsing-secrets-file":
            reason = error.__cause__ or "not valid TOML"  # the parser's words; not the server's path
            raise ConfigError(unreadable.format(reason)) from None
        secrets = {}
    except UnicodeDecodeError:
        raise ConfigError(unreadable.format("not UTF-8 text: save it as UTF-8")) from None
    except OSError as error:  # a folder of that name, no permission: the reason, not the server's path
        raise ConfigError(unreadable.format(error.strerror or type(error).__name__)) from None
    return read_deployment(secrets)


def upload_mb(limit_mb: int) -> int:
    """The size in MB an upload may have: ``limit_mb``, or Streamlit's own cap (``server.maxUploadSize``)
    where that is smaller, since Streamlit's server refuses a larger file before any page sees it."""
    return min(limit_mb, st.get_option("server.maxUploadSize"))


def literal(name: str) -> str:
    """A file or folder name for a line of Markdown, each character that Markdown (or Streamlit's
    ``:icon:`` and ``$math$``) could act on inside a sentence backslash-escaped, so that a name such
    as ``**b** [l](http://x)`` shows as typed: no formatting, no link, no remote image. ``.`` and ``&``
    too: ``www.x.com`` or ``a@b.c`` would be made links by themselves, ``&amp;`` shown as ``&``."""
    return re.sub(r"([\\`*_{}\[\]()<>#|~$!:.&])", r"\\\1", name)


def hidden(value):
    """``value`` (a result, rows: dicts, lists, strings, numbers) with every string value as
    :func:`leukdash.paths.hide_roots` shows it: what a visitor downloads names no server folder, as
    no page text does (a run's ``config.dataset`` and ``dataset.path`` are the server's paths)."""
    if isinstance(value, str):
        return paths.hide_roots(value)
    if isinstance(value, dict):
        return {key: hidden(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hidden(item) for item in value]
    return value


def said(text: str) -> str:
    """A message made of names a user or a dataset controls (an engine's warning naming files, classes,
    paths) for a line of Markdown: no server folder (:func:`leukdash.paths.hide_roots`), every
    character as written (:func:`literal`)."""
    return literal(paths.hide_roots(text))


def few_named(names: list[str], most: int = 10) -> str:
    """The first ``most`` names for a line of Markdown (each through :func:`literal`), then how many more:
    a sweep's hundreds of runs would otherwise fill the page."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return "; ".join(literal(name) for name in names[:most]) + more


def session_token() -> str:
    """A random token of this browser session: its uploads live under it, hidden from others."""
    if "_session_token" not in st.session_state:
        import secrets

        st.session_state["_session_token"] = secrets.token_hex(12)
    return st.session_state["_session_token"]


def mark_session_seen() -> None:
    """This session is alive (see :func:`leukdash.service.uploads.mark_session_seen`): while it is,
    the finished runs on its uploads keep them from eviction."""
    from leukdash.service.uploads import mark_session_seen as mark

    if "_session_token" in st.session_state:  # a session that never uploaded has no folder
        mark(st.session_state["_session_token"])


VIEWER_NOTE = ("This deployment is a viewer (LEUKDASH_MODE=viewer): {what} are off. Browse the stored runs "
               "on Compare, predict with them on Predict and read the Report.")


# --------------------------------------------------------------------------- kept widget values


def kept(widget, key: str, default, *args, bind: bool = False, **kwargs):
    """Call ``widget(*args, key=key, **kwargs)`` so its value survives a visit to another page.

    Streamlit forgets the state of widgets a page did not draw, and a widget drawn again at
    another place (the sidebar of another page) starts from its default in the browser. So
    the value is copied to a plain session key (``_kept_<key>``) after each run, and the
    widget is always drawn with its current value as its default. A kept choice that is no
    longer among ``options`` falls back to ``default``; a kept number outside ``min_value`` and
    ``max_value`` is brought to the nearest bound.

    With ``bind``, the value also lives in the page's URL (query parameter ``key``), so a
    reload keeps it and a copied link opens the same settings. Such a widget keeps its fixed
    ``default`` (a value equal to it leaves the URL clean) and a kept value is put back
    through the session state instead, also after the browser's Back or Forward to an address
    without the setting; an address with it wins (a shared link).
    """
    shadow = f"_kept_{key}"
    linked = st.query_params.get_all(key) if bind else []
    value = st.session_state[key] if key in st.session_state else st.session_state.get(shadow, default)
    options = kwargs.get("options")
    if options is not None:
        options = list(options)
        if not all(v in options for v in (value if isinstance(value, list) else [value])):
            value = default
            st.session_state.pop(key, None)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Bounds that moved since (another dataset, a smaller class): the kept number is clamped.
        bounded = value if low is None else max(value, low)
        bounded = bounded if high is None else min(bounded, high)
        if bounded != value:
            value = bounded
            st.session_state.pop(key, None)
    if bind:
        if key not in st.query_params and value != default and history_navigation():
            # The browser's Back or Forward to an address of this page without this setting (the one it
            # recorded on leaving the page): Streamlit would draw the widget at its default, and that
            # would replace the kept value. Run again as an ordinary run, which draws the kept value.
            st.rerun()
        if key not in st.session_state and shadow in st.session_state and key not in st.query_params:
            st.session_state[key] = value
        value, kwargs["bind"] = default, "query-params"
    parameter = {"selectbox": "index", "radio": "index", "multiselect": "default"}.get(widget.__name__, "value")
    kwargs[parameter] = options.index(value) if parameter == "index" else value
    value = widget(*args, key=key, **kwargs)
    st.session_state[shadow] = value
    shown = kwargs.get("format_func", str)
    if linked and not _link_taken(linked, value, shown):
        # Streamlit drops a link's value the widget does not take (not offered, out of range) without a word.
        used = ", ".join(literal(str(shown(v))) for v in (value if isinstance(value, list) else [value]))
        link_note(f"{args[0]} {', '.join(literal(v) for v in linked)} → {used}")
    return value


def _link_taken(linked: list[str], value, shown=str) -> bool:
    """Whether the widget's ``value`` is what the link's values ``linked`` ask (a number as written or
    not, "3.0" for 3). Streamlit writes an option to the URL as its label, ``shown(option)`` (the
    widget's ``format_func``), so a link names options by their labels."""
    values = value if isinstance(value, list) else [value]

    def taken(text: str) -> bool:
        if text in map(str, values) or text in (str(shown(v)) for v in values):
            return True
        try:
            return len(values) == 1 and float(text) == values[0]
        except ValueError:  # not a number: not this value
            return False

    return all(taken(text) for text in linked)


def link_note(replaced: str) -> None:
    """Add a setting of the link replaced (its name, values and those used) to this run's one line."""
    place, said = st.session_state[LINK_NOTE]
    said.append(replaced)
    place.warning("Some settings of the link cannot be used here (not offered or out of range), so they were "
                  f"replaced: {'; '.join(said)}.", icon=":material/warning:")


def history_navigation() -> bool:
    """Whether this script run is the browser's Back or Forward (Streamlit's run context says so)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    return bool(context and context.is_history_navigation)


def root() -> str:
    """The artifacts folder of this process; part of every cache key."""
    return str(paths.artifacts_root())
