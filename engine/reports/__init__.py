"""What users read about accuracy: metrics on held-out objects (``metrics``), the evaluate command
that checks a class map against reference polygons (``evaluation``), and the self-contained
HTML reports of training and evaluation (``html``). It may import every layer below it up to
``inference``, never a family."""
