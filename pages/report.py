"""Report: the paper's experiments reproduced, beside the paper's own figures.

Shows the newest report written by ``python -m leukdash reproduce`` (the full one committed in
``docs/report``, or a ``--quick`` one); figures referenced by the Markdown are shown in place.
"""

import re
from pathlib import PurePath

import streamlit as st

from leukdash.paths import hide_roots, printable
from leukdash.reporting.reproduce import report_path, report_runs_in_store
from pages._session import routed

routed(__file__)

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")

st.title("Paper reproduction")
path = report_path()
if path is None:
    st.info("No report yet. Run `python -m leukdash reproduce --quick` (about 10 minutes) or the full "
            "`python -m leukdash reproduce`; the report appears here.")
    st.stop()

try:
    raw = path.read_bytes()
except OSError as error:  # removed or made unreadable since report_path() found it
    st.error(hide_roots(f"Cannot read the report: {error}"))
    st.stop()
try:
    text = raw.decode("utf-8")
except UnicodeDecodeError:
    text = raw.decode("utf-8", errors="replace")
    st.warning(f"{path.name} is not UTF-8 text: the characters that cannot be decoded are shown as \ufffd.",
               icon=":material/warning:")
present, named = report_runs_in_store(text)
st.caption(f"`{hide_roots(str(path))}`, written by `python -m leukdash reproduce` on the machine that ran its "
           f"experiments: {present} of the {named} run{'s' * (named != 1)} it names {'is' if present == 1 else 'are'} "
           "in this deployment's store"
           + (" (Compare and Predict show only those)." if present < named else "."))


def show_figure(link: str, caption: str | None) -> None:
    """A figure the report links to, or a caption saying why it is not shown. Only files inside the
    report's folder are shown: a link is text anyone who can write the report controls, and an absolute
    path or ``..`` would show any image on the server."""
    folder, name = path.parent.resolve(), printable(PurePath(link).name or link)  # the link may hold a server path
    try:
        figure = (folder / link).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte in the link
        st.caption(f"Figure {name} cannot be shown: its link names no file.")
        return
    if not figure.is_relative_to(folder):
        st.caption(f"Figure {name} is not shown: it is outside the report's folder.")
    elif not figure.is_file():
        st.caption(f"Figure {name} is missing from the report's folder.")
    else:
        try:
            st.image(str(figure), caption=caption)
        except (OSError, ValueError):  # PIL cannot identify it, or an SVG that is not UTF-8
            st.caption(f"Figure {name} cannot be shown: the file is damaged or not an image.")


position = 0
for match in IMAGE.finditer(text):
    st.markdown(text[position:match.start()])
    show_figure(match.group(2), match.group(1) or None)
    position = match.end()
st.markdown(text[position:])
