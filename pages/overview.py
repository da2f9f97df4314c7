"""Overview: what leukdash does, the datasets found, the latest runs, the paper's figures.

Kept light on purpose (no dataset is decoded, nothing heavy imported): it is the first paint.
"""

import os

import streamlit as st

from leukdash.data.synthetic import DEFAULT_COUNTS
from leukdash.errors import LeukdashError
from leukdash.paths import hide_roots
from leukdash.reporting.plots import paper_figures, paper_table, runs_frame
from pages._session import deployment, root, routed
from pages._shared import data_root_warnings, dataset_info, discovered, no_runs_yet, visible_runs
from pages._tables import data_table, fitted, percent_columns

routed(__file__)

st.title("leukdash")
st.markdown(
    "Identify leukemia subtypes (**ALL, AML, CLL, CML**) and healthy cells in microscopic "
    "blood-cell images, and compare a convolutional network with classic classifiers under "
    "cross-validation that keeps augmented copies of one image out of its validation fold. "
    "A reproduction of Ahmed et al., *Diagnostics* 9(3):104, 2019."
)

STEPS = [
    ("data", "Class counts, samples, duplicates and shortcut checks."),
    ("augmentation", "The paper's seven transforms and three for robustness, previewed."),
    ("experiments", "Sweeps of cross-validated runs in the background, live progress."),
    ("compare", "Accuracy per fold, learning curves, McNemar tests, sweeps."),
    ("predict", "Class probabilities and Grad-CAM for your images."),
]
for column, (page, text) in zip(st.columns(len(STEPS)), STEPS):
    with column.container(border=True, height="stretch"):
        # The label alone: with its icon, "Augmentation" and "Experiments" are cut off below ~1300 px.
        st.page_link(f"pages/{page}.py", label=page.capitalize())
        st.caption(text)

st.subheader("The paper's reported figures")
left, right = st.columns([6, 5], gap="large")
left.plotly_chart(paper_figures(), width="stretch", config={"displayModeBar": False})
with right:
    table, percent = percent_columns(paper_table(), ["ALL vs HEALTHY", "5 classes"], decimals=2)
    data_table(table, column_config=fitted(table, percent))
    st.caption(
        "5-fold mean validation accuracy reported by Ahmed et al. (2019); whiskers span the CNN's "
        "reported folds (min–max). The paper split its originals before augmenting, but on images, not "
        "patients, so its figures are optimistic; its SVM at chance level points to unscaled "
        "raw-pixel input."
    )

# The tables below take the full width: paths and run labels are too long for half the page.
st.subheader("Datasets")
data_root_warnings()
found = discovered(root(), os.environ.get("LEUKDASH_DATA", ""))
rows = []
for name, folder in found.items():
    if folder is None:  # the built-in set before its first use: nothing to count yet
        rows.append({"Dataset": name, "Images": sum(DEFAULT_COUNTS.values()), "Classes": len(DEFAULT_COUNTS),
                     "Note": "synthetic demo data, not clinical (drawn on first use)"})
        continue
    try:
        info = dataset_info(name, root())
    except LeukdashError as error:
        rows.append({"Dataset": name, "Images": None, "Classes": None, "Note": hide_roots(f"cannot be read: {error}")})
        continue
    rows.append({"Dataset": name, "Images": info["n_images"], "Classes": len(info["class_names"]),
                 "Note": "synthetic demo data, not clinical" if info["synthetic"] else hide_roots(info["path"])})
data_table(rows, column_config=fitted(rows))
upload_note = "." if deployment().viewer else "; a zip can be uploaded on the Data page."
st.caption("Datasets are folders with one subfolder per class (or ALL-IDB file names) under "
           f"`$LEUKDASH_DATA` or `./data`{upload_note}")

st.subheader("Latest runs")
entries = visible_runs()
if entries:
    table, percent = percent_columns(
        runs_frame(entries[:8]).drop(columns=["Run id"]),
        ["Val. accuracy", "SD"])
    data_table(table, column_config=fitted(table, percent))
    st.page_link("pages/compare.py", label="Compare runs", icon=":material/arrow_forward:")
else:
    no_runs_yet("the latest will be listed here")
