"""The built-in real sample: a 512x512 fluorescence nuclei image and its hand-made instance mask."""

from __future__ import annotations

from importlib import resources

import numpy as np

SAMPLE = "dsb2018_nuclei_512.npz"

NUCLEI_ATTRIBUTION = (
    "2018 Data Science Bowl (BBBC038, Caicedo et al., Nature Methods 2019), as shipped in the test "
    "data of the stardist package (BSD-3-Clause)"
)


def load_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The built-in 512² nuclei image (uint16) and its instance mask (0 = background)."""
    with resources.files("scribble_unet.data").joinpath(SAMPLE).open("rb") as f:
        data = np.load(f)
        return np.asarray(data["image"]), np.asarray(data["instances"])
