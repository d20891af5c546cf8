"""Sample data contributions: two procedural images with rare objects, and a real nuclei image."""

from __future__ import annotations

from typing import Any

from ..image.nuclei import NUCLEI_ATTRIBUTION, load_nuclei
from ..image.procedural import ProceduralSample, procedural_sample

LayerData = list[tuple[Any, dict[str, Any], str]]



def procedural_layers(sample: ProceduralSample, name: str) -> LayerData:
    """Image and ground-truth layers of a procedural sample, as lazy multiscale pyramids."""
    meta = {"scribble_unet_source": sample.source(), "sample_spec": sample.spec}
    image = (
        sample.image_levels(),
        {"name": name, "multiscale": True, "contrast_limits": sample.contrast_limits, "metadata": meta},
        "image",
    )
    truth = (
        sample.truth_levels(),
        {"name": f"{name} ground truth", "multiscale": True, "visible": False, "opacity": 0.5},
        "labels",
    )
    return [image, truth]


def small_sample(seed: int = 0) -> LayerData:
    """The 16384² procedural sample and its ground truth."""
    return procedural_layers(procedural_sample("small", seed=seed), "rare objects 16k")


def large_sample(seed: int = 0) -> LayerData:
    """The 65536² procedural sample and its ground truth (generated on demand, never whole)."""
    return procedural_layers(procedural_sample("large", seed=seed), "rare objects 64k")


def nuclei_sample() -> LayerData:
    """The real fluorescence nuclei image with its hand-made instance mask, and attribution."""
    image, instances = load_nuclei()
    meta = {"attribution": NUCLEI_ATTRIBUTION, "license": "BSD-3-Clause"}
    return [
        (image, {"name": "nuclei (DSB 2018)", "metadata": meta}, "image"),
        (instances, {"name": "nuclei instances", "visible": False, "metadata": meta}, "labels"),
    ]
