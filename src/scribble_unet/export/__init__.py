"""Whole-image export into OME-Zarr, resumable, on threads or a dask.distributed cluster."""
