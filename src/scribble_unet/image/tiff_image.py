"""TIFF files (plain, OME-TIFF, ImageJ, pyramidal), read lazily through tifffile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputImageError
from .axes import UNKNOWN, C, X, Y
from .stored import StoredSource, one_line

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
# Classic TIFF and BigTIFF headers, little and big endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")



class TiffSource(StoredSource):
    """The first series of a TIFF file (plain, OME-TIFF, ImageJ or pyramidal), read lazily.

    Each pyramid level is read through tifffile's zarr view of its strips or tiles, so a window reads
    only the strips or tiles it touches; uncompressed levels stored in one contiguous block are
    memory-mapped instead, because their zarr view would be a single chunk. The axes come from
    tifffile's series axes (``YX``, ``CYX``, ``YXS`` for RGB, ...).
    """

    _kind = "tiff"

    def __init__(self, path: Path, channel_axis: int | None = None, name: str = "image") -> None:
        super().__init__(path, name)
        self._arrays()
        assert self._cache is not None
        #: tifffile's axes letters of the first series, e.g. ``"YX"``, ``"CYX"``, ``"YXS"``.
        self.axes: str = self._cache[1].series[0].axes
        self._setup(_tiff_axes(self.axes), channel_axis, f"TIFF file {path}")

    def _open_handle(self) -> Any:
        import tifffile

        try:
            return tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, OSError) as err:
            raise InputImageError(
                f"{self.path} is not a readable TIFF file ({one_line(err)})"
            ) from err

    def _open(self) -> tuple[list[Any], Any]:
        import tifffile
        import zarr

        tf = self._open_handle()
        try:
            if not tf.series:
                raise InputImageError(f"TIFF file {self.path} holds no image")
            series = tf.series[0]
            arrays: list[Any] = []
            for level in range(len(series.levels)):
                try:
                    arrays.append(tifffile.memmap(self.path, series=0, level=level, mode="r"))
                    continue
                except ValueError:  # compressed, tiled or scattered: not memory-mappable
                    pass
                store = tf.aszarr(series=0, level=level)
                arrays.append(zarr.open_array(store, mode="r"))
        except InputImageError:
            tf.close()
            raise
        except Exception as err:
            tf.close()
            raise InputImageError(f"cannot read TIFF file {self.path} ({one_line(err)})") from err
        return arrays, tf


def _tiff_axes(letters: str) -> list[tuple[str, str]]:
    """Axis roles from tifffile's series axes: Y, X; C and S (samples) are channels; T, Z planes."""
    roles = {"Y": Y, "X": X, "C": C, "S": C, "T": "t", "Z": "z"}
    return [(roles.get(a, UNKNOWN), a) for a in letters]


def has_tiff_header(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise InputImageError(f"cannot read {path} ({err.strerror or err})") from err
    return head in TIFF_MAGIC
