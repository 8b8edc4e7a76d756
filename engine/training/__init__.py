"""Training shared by the deep families: the loop (Adam, reduce-on-plateau, the best epoch's
weights, DistributedDataParallel and checkpoints when several ranks train; ``loop``) and
class-balanced patch sampling with augmentation (``sampling``), and the choices of their settings
(``choices``, import-free: the plugin offers them). It may import every layer below
it (foundation, ``compute``, ``io``, ``reference``, ``modelfile``), never ``inference``,
``reports`` or a family."""
