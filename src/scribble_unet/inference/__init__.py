"""Prediction: tiling, the chunk predictor, lazy dask prediction and the live view's engine."""
