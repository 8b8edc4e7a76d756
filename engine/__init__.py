"""The lcfusion engine: data, models, training and inference; it never imports qgis.

Run it with ``python -m lcfusion.engine <command> <job.json>``.
"""

__version__ = "0.1.0"
