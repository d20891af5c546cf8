"""Scribbles: the store on disk (zarr), the project folder and the overview pyramid shown in napari."""
