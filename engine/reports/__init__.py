"""What users read about accuracy: metrics on held-out objects (``metrics``), the evaluate command
that checks a class map against reference polygons (``evaluation``), good-practice area
estimates from a stratified sample (the estimators in ``areas``, the sample-design and
area-accuracy commands in ``area_estimation``), the class map's header checks and legend
(``classmaps``, no scikit-learn), and the self-contained HTML reports of
training and evaluation (``html``). It may import every layer below it up to
``inference``, never a family."""
