"""The model families, one package each — ``fgunet``, ``mrfusion``, ``twinns`` and
``randomforest`` — holding the family's network (or forest), its job commands (train and
classify in ``commands``) and what only it needs, so a family is read in one place. Beside them
the steps the families share: output checks, the reference split, accuracy on the test polygons
and writing maps (``jobsteps``), training over repeated splits (``repeats``), fitting on a
compute target (``staged``) and classifying on one, in blocks shared out over its ranks
(``blockjobs``). It may import every layer below it; a family may use another's
inputs (the Random Forest takes TWINNS's S1 + S2 sources)."""
