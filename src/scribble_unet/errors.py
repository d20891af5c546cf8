"""User-facing errors.

Every problem a user can cause (a missing file, a wrong shape, a bad option) is raised as a
:class:`ScribbleUNetError` with a one-line message that names the problem. The CLI prints such errors
as ``error: <message>`` and exits with status 2, without a traceback; the napari widgets show them as
notifications. Anything else that escapes is a bug.
"""

from __future__ import annotations


class ScribbleUNetError(ValueError):
    """A problem with the user's input, reported as one plain line."""


class CheckpointError(ScribbleUNetError):
    """A model file that cannot be loaded safely or does not describe a scribble-unet model."""


class InputImageError(ScribbleUNetError):
    """An image that cannot be read or that the model cannot use."""
