"""The lcfusion model file: its header and format, readable without torch (``header``), what its
metadata and tensor table must hold (``schema``), and saving and loading the weights with
safetensors, never pickle (``storage``). The plugin reads headers in QGIS, so ``header`` and
``schema`` stay free of torch. It may import the foundation modules, ``compute``, ``io`` and
``reference``."""
