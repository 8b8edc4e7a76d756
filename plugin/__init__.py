"""The QGIS side of lcfusion: Processing provider, algorithms, export, styling, settings.

Nothing here imports torch; heavy work runs in the engine, in a child process.
"""
