"""The bindings: each turns one kind of Processing input or output into part of an engine job.
`EngineAlgorithm`'s ``add_*`` helpers declare a binding's parameters; the binding then checks
their values before the run, writes its entries into the job and, after a successful run, works
on the engine's outputs (styling, the split layer). One module per kind: `binding` (the base and
the job being assembled), `series`, `panms`, `sources`, `reference` (polygons and split),
`options` (settings, compute profile, fill value), `modelfile`, `classmap` and `outputs`. The
bindings may import qgis, the plugin's export, styling and settings helpers and torch-free engine
modules; never `EngineAlgorithm`, which imports them (`binding` names it only as a type
annotation, under ``TYPE_CHECKING``).
"""
