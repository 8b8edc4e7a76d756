"""Applying a network to a whole raster: overlapping tiles of which only the centre is kept and
the tile predictors (``tiling``), and classifying — a reader thread loading the next tile while
this one computes, GDAL's cache sized for it, the class map and confidence written block by
block (``classifying``), a map cut into blocks for the ranks of a compute target and merged
back (``blocks``), and ensembles, several networks classifying as one with the mean of
their class probabilities (``ensemble``). It may import every layer below it up to
``training``, never ``reports`` or a family."""
