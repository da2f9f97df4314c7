"""leukdash dashboard: ``streamlit run streamlit_app.py``.

The pages live in ``pages/``; this file only sets the page up and routes between them, so the
landing page pays for nothing another page needs.
"""

from pathlib import Path

import streamlit as st

from leukdash.engine.machine import configured_memory_mb
from leukdash.engine.store import RunStore, runs_folder_problem
from leukdash.errors import LeukdashError
from leukdash.paths import check_artifacts_root
from pages._session import deployment, said

# A local file: a material or emoji icon would be fetched from a font server, which fails offline.
ICON = Path(__file__).parent / "assets" / "icon.png"
st.set_page_config(page_title="leukdash", layout="wide", page_icon=str(ICON))
# A chosen option of a multiselect shows its whole name, on several lines if need be: Streamlit (1.67: a chosen
# option is span[data-tag] > span[title], in a row of fixed height that scrolls sideways) cuts it short and lets
# the options it cannot fit slide under the clear button.
st.html("<style>.stMultiSelect div[role='group'] {height: auto; max-height: none}"
        " .stMultiSelect [data-testid='stMultiSelectTagsContainer'] {flex: 1 1 0; min-width: 0; flex-wrap: wrap;"
        " height: auto; overflow: visible}"
        " .stMultiSelect span[data-tag] {max-width: 100%; height: auto}"
        " .stMultiSelect span[data-tag] > span[title] {max-width: none; white-space: normal}</style>")

try:
    deployment()
    check_artifacts_root()  # its message names the folder the deployer set, never a session's
    configured_memory_mb()  # the Experiments page's estimate and the runs it launches read it
except LeukdashError as error:  # a wrong LEUKDASH_MODE, limit or store: say which, serve nothing
    st.error(f"Deployment setting: {error}")
    st.stop()
# The store's runs folder a file, or one this user may not list: every page that reads a run would fail on it
# in its own way, so it is said once, on every page, until it is mended (this script runs at each rerun).
if problem := runs_folder_problem(RunStore().root):
    st.error(f"Run store: {said(problem)}")
    st.stop()

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/augmentation.py", title="Augmentation", icon=":material/auto_awesome_motion:"),
    st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/bar_chart:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/center_focus_strong:"),
    st.Page("pages/report.py", title="Report", icon=":material/description:"),
]

st.session_state["_routed"] = True  # see pages/_session.py: routed()
page = st.navigation(PAGES)
if "_deep_link" in st.session_state:
    st.switch_page(st.session_state.pop("_deep_link"), query_params=st.session_state.pop("_deep_query", None))
page.run()
