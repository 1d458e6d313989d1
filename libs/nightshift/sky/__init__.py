"""Sky pixelization (HEALPix through cdshealpix) and sky maps (tracts and patches).

cdshealpix (CDS, Rust core) is used rather than lsst-sphgeom because it is
already a nightshift dependency, ships wheels for every platform and answers
polygon and cone coverage queries directly in nested HEALPix indices, which is
what the registry's spatial index stores.
"""

from ._pixelization import COMMON_ORDER, cell_range, point_pixel, polygon_pixels
from ._skymap import HealpixSkyMap, PatchInfo, TractInfo

__all__ = ["COMMON_ORDER", "HealpixSkyMap", "PatchInfo", "TractInfo", "cell_range", "point_pixel", "polygon_pixels"]
