"""Augmentation: switch the paper's seven transforms (and three that are not in the paper: colour and stain
jitter, blur) on or off, set their ranges, preview them.

The settings are kept in ``st.session_state["augment"]`` (an AugmentConfig as a dict), which the
Experiments page uses.
"""

import streamlit as st

from leukdash.data.preprocess import is_grey
from leukdash.engine.augment import preview
from leukdash.config import AugmentConfig, FILL_MODES, RunConfig
from leukdash.errors import LeukdashError
from pages._session import kept, literal, routed, said
from pages._shared import dataset_picker, image, load_dataset_info, synthetic_note

routed(__file__)

PREVIEW_SIZE = 128
COPIES = 8
# name: (label, widget maximum, step, shown as, widget value per config unit). The config value is
# the widget's divided by it: 35 / 100 is the 0.35 typed, where 35 * 0.01 is 0.35000000000000003.
RANGES = {
    "rotation": ("Rotation", 180, 5, "± %d°", 1),
    "width_shift": ("Width shift", 100, 5, "± %d%% of width", 100),
    "height_shift": ("Height shift", 100, 5, "± %d%% of height", 100),
    "zoom": ("Zoom", 90, 5, "± %d%%", 100),
    "shear": ("Shear", 60, 5, "± %d°", 1),
    "colour_jitter": ("Colour jitter", 50, 5, "± %d%%", 100),
    "stain_jitter": ("Stain jitter", 50, 5, "± %d%%", 100),
    "blur": ("Blur", 30, 1, "σ up to %d/10 px", 10),
}
# Where a slider starts when its smallest step does nothing: a blur up to 0.1 px draws only sigmas
# that training skips (MIN_BLUR_SIGMA), and runs refuse it.
LEAST = {"blur": 2}
# The transforms the paper did not use, said on their toggles (a label that long was cut short).
NOT_IN_PAPER = {
    "colour_jitter": "Not in the paper: varies brightness, red and blue gain and gamma per copy, as lamps and "
                     "cameras vary.",
    "stain_jitter": "Not in the paper: scales each stain's density in HED space (haematoxylin, eosin, DAB) per "
                    "copy, as staining varies.",
    "blur": "Not in the paper: blurs each copy by a random sigma up to this one, as focus varies.",
}
# Off in the paper's settings: where their sliders start when switched on.
OPTIONAL_START = {"colour_jitter": 0.1, "stain_jitter": 0.1, "blur": 1.0}
FLIPS = {"horizontal_flip": "Horizontal flip", "vertical_flip": "Vertical flip"}


def set_widgets(config: AugmentConfig) -> None:
    """Put a config's values into the widgets (a button callback, so before they are drawn)."""
    for name, (_, _, _, _, per_unit) in RANGES.items():
        value = getattr(config, name)
        st.session_state[f"aug_on_{name}"] = st.session_state[f"_kept_aug_on_{name}"] = value > 0
        if value > 0:
            st.session_state[f"aug_{name}"] = st.session_state[f"_kept_aug_{name}"] = round(value * per_unit)
    for name in FLIPS:
        st.session_state[f"aug_on_{name}"] = st.session_state[f"_kept_aug_on_{name}"] = getattr(config, name)
    st.session_state["aug_fill"] = st.session_state["_kept_aug_fill"] = config.fill_mode


st.title("Augmentation")
st.markdown("The paper enlarged each class about 8x with random affine copies of every image "
            "(Keras `ImageDataGenerator`). Set each transform's range; every copy draws its "
            "parameters uniformly within them, and each flip happens with probability ½. The last three are "
            "not in the paper (off in its settings), for robustness to another lab: colour jitter varies "
            "brightness, red and blue gain and gamma per copy, as lamps and cameras vary; stain jitter "
            "scales each stain's density (haematoxylin, eosin, DAB), as staining varies; blur varies focus.")

paper = AugmentConfig()
saved = AugmentConfig.from_dict(st.session_state.get("augment", paper.to_dict()))
controls, gallery = st.columns([2, 3], gap="large")

with controls:
    values = {}
    for name, (label, maximum, step, shown, per_unit) in RANGES.items():
        on_col, slider_col = st.columns([2, 3], vertical_alignment="center")
        default_on = getattr(saved, name) > 0
        on = kept(on_col.toggle, f"aug_on_{name}", default_on, label, help=NOT_IN_PAPER.get(name))
        start = getattr(saved, name) or getattr(paper, name) or OPTIONAL_START[name]
        amount = kept(slider_col.slider, f"aug_{name}", round(start * per_unit),
                      f"{label} range", min_value=LEAST.get(name, step), max_value=maximum, step=step, format=shown,
                      disabled=not on, label_visibility="collapsed")
        values[name] = amount / per_unit if on else 0.0
    flip_cols = st.columns(2)
    for column, (name, label) in zip(flip_cols, FLIPS.items()):
        values[name] = kept(column.toggle, f"aug_on_{name}", getattr(saved, name), label)
    values["fill_mode"] = kept(st.selectbox, "aug_fill", saved.fill_mode, "Fill uncovered border with",
                               options=list(FILL_MODES),
                               format_func={"nearest": "nearest pixels (paper)", "reflect": "mirror image",
                                            "constant": "black"}.get)
    config = AugmentConfig(**values)
    st.session_state["augment"] = config.to_dict()
    buttons = st.columns(2)
    buttons[0].button("Paper settings", on_click=set_widgets, args=(paper,), width="stretch")
    buttons[1].button("All off", on_click=set_widgets, args=(AugmentConfig.off(),), width="stretch")
    st.caption(f"On: {', '.join(config.enabled()).replace('_', ' ') or 'nothing'}. These settings are used by runs "
               "launched on the Experiments page (with augmentation switched on there).")

with gallery:
    dataset = dataset_picker()
    info = load_dataset_info(dataset)
    if info is None:
        st.stop()
    synthetic_note(info)
    classes = [c for c, files in info["files"].items() if files]
    pick_cols = st.columns([2, 2, 2], vertical_alignment="bottom")
    cls = kept(pick_cols[0].selectbox, "aug_class", classes[0], "Class", options=classes)
    files = info["files"][cls]
    number = kept(pick_cols[1].number_input, "aug_image", 1, f"Image (1–{len(files)})",
                  min_value=1, max_value=len(files), step=1)
    if pick_cols[2].button("New random copies", icon=":material/casino:", width="stretch"):
        st.session_state["augment_seed"] = st.session_state.get("augment_seed", 0) + 1
    seed = st.session_state.get("augment_seed", 0)
    chosen = files[min(number, len(files)) - 1]
    try:
        original = image(info["path"], chosen, PREVIEW_SIZE)
    except LeukdashError as error:  # an empty or damaged file: the settings above still work
        st.error(f"Image {number} of {literal(cls)} ({literal(chosen)}) cannot be read: {said(str(error))}. "
                 "Pick another image.",
                 icon=":material/broken_image:")
        st.stop()
    # A blur is in pixels of the run's images: shown as at the first size kept on Experiments.
    sizes = st.session_state.get("_kept_exp_sizes") or []
    run_size = sizes[0] if sizes else RunConfig().image_size
    with st.spinner("Transforming…"):
        copies = preview(original, config, n=COPIES, seed=seed, run_size=run_size)
    st.image([original, *copies], width=150,
             caption=["original"] + [f"copy {i + 1}" for i in range(COPIES)])
    size_source = ("the first of the Experiments page's image sizes" if len(sizes) > 1 else
                   "the Experiments page's image size" if sizes else "the default image size")
    blur_note = f" Blur is shown as it acts on {run_size} px images ({size_source})." if config.blur else ""
    st.caption(f"{literal(chosen)} padded square at {PREVIEW_SIZE} px, then {COPIES} random "
               f"copies (seed {seed}). Training applies the same transforms at the run's image size.{blur_note}")
    grey = [mode for mode in st.session_state.get("_kept_exp_preprocess", []) if is_grey(mode)]
    if grey and (config.colour_jitter or config.stain_jitter):
        st.caption(f"With {', '.join(grey)} (chosen on the Experiments page) the jitter adds some colour to the "
                   "grey cells of training copies only: validation and prediction images stay grey.")
