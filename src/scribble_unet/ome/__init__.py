"""OME-Zarr (NGFF) metadata: what this package reads from and writes into zarr groups."""
