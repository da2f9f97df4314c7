"""Report: the paper's experiments reproduced, beside the paper's own figures.

Shows the newest report written by ``python -m leukdash reproduce`` (the full one committed in
``docs/report``, or a ``--quick`` one); figures referenced by the Markdown are shown in place.
"""

import re

import streamlit as st

from leukdash.paths import hide_roots
from leukdash.reporting.reproduce import report_path, report_runs_in_store
from pages._shared import routed

routed(__file__)

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")

st.title("Paper reproduction")
path = report_path()
if path is None:
    st.info("No report yet. Run `python -m leukdash reproduce --quick` (about 10 minutes) or the full "
            "`python -m leukdash reproduce`; the report appears here.")
    st.stop()

text = path.read_text()
present, named = report_runs_in_store(text)
st.caption(f"`{hide_roots(str(path))}`, written by `python -m leukdash reproduce` on the machine that ran its "
           f"experiments: {present} of the {named} run{'s' * (named != 1)} it names {'is' if present == 1 else 'are'} "
           "in this deployment's store"
           + (" (Compare and Predict show only those)." if present < named else "."))
position = 0
for match in IMAGE.finditer(text):
    st.markdown(text[position:match.start()])
    figure = path.parent / match.group(2)
    if figure.is_file():
        st.image(str(figure), caption=match.group(1) or None)
    position = match.end()
st.markdown(text[position:])
