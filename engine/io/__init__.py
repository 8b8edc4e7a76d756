"""Everything that reads or writes pixels, and the grids they lie on: raster facts and windowed
reading (``rasters``), time series of rasters and their dates (``series``), gap-filling in time
(``gapfill``), spectral indices (``indices``), several series as model inputs (``sources``), PAN
+ MS pairs and their alignment (``panms``, ``alignment``), percentile normalisation
(``normalization``), sample packs (``pack``), fill areas without declared nodata (``fill``),
outputs written under a temporary name and renamed when complete (``outputs``) and the maps'
overviews and Cloud Optimized GeoTIFF copies (``overviews``). It may import
the foundation modules and ``compute``; nothing here knows reference polygons, models or
families."""
