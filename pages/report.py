"""Report: the paper's experiments reproduced, beside the paper's own figures.

Shows the newest report written by ``python -m leukdash reproduce`` (the full one committed in
``docs/report``, or a ``--quick`` one); figures referenced by the Markdown are shown in place.
"""

import re

import streamlit as st

from leukdash.reporting.reproduce import report_path
from pages._shared import routed

routed(__file__)

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")

st.title("Paper reproduction")
path = report_path()
if path is None:
    st.info("No report yet. Run `python -m leukdash reproduce --quick` (about 10 minutes) or the full "
            "`python -m leukdash reproduce`; the report appears here.")
    st.stop()

st.caption(f"`{path}` — written by `python -m leukdash reproduce`; every figure comes from runs in the store.")
text = path.read_text()
position = 0
for match in IMAGE.finditer(text):
    st.markdown(text[position:match.start()])
    figure = path.parent / match.group(2)
    if figure.is_file():
        st.image(str(figure), caption=match.group(1) or None)
    position = match.end()
st.markdown(text[position:])
