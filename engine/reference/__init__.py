"""What the maps are trained and checked against: class tables (codes, names, colours;
``classes``), reference polygons read, rasterised on a grid and turned into labelled pixels
(``polygons``), and seeded object-level train / validation / test splits (``splits``). It may
import the foundation modules, ``compute`` and ``io``."""
