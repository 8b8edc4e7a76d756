"""The lcfusion engine: data, models, training and inference; it never imports qgis.

Run it with ``python -m lcfusion.engine <command> <job.json>``.

The folders are the architecture. Each layer below may import the layers listed before it and
never one after it (``tests/test_architecture.py`` enforces the order):

1. the foundation, top-level modules: ``errors`` (what users are told), ``wording`` (counts in
   words), ``progress`` (progress and log events) and ``jobs`` (the job folder and its
   ``job.json``);
2. ``compute`` — where the engine runs: torch devices and threads, the ranks of a distributed
   run, compute profiles (here, mpirun, ssh, Slurm) and the launcher that starts a job on one;
   it knows nothing of pixels or model families;
3. ``io`` — everything that reads or writes pixels: rasters and their grids, time series,
   sources, PAN + MS pairs, alignment, gap-filling, indices, normalisation, sample packs, fill
   areas and the outputs written safely;
4. ``reference`` — reference polygons, class tables and object-level splits;
5. ``modelfile`` — the model file: its format, header and schema, readable without torch;
6. ``training`` — the training loop shared by the deep families and their patch sampling;
7. ``inference`` — tiled prediction and classifying a raster block by block;
8. ``reports`` — accuracy metrics, McNemar's test, the evaluate, compare-maps, sample-design
   and area-accuracy commands and
   the HTML reports;
9. ``families`` — one package per model family (FG-UNET, MRFusion, TWINNS, Random Forest)
   with its network and its job commands, beside the steps the families share;
10. the entry points, top-level: ``cli`` (the command line), ``__main__`` and
    ``sample_scene`` (the synthetic demo scene).
"""

__version__ = "0.1.0"
