"""MRFusion (Gaetano et al. 2018) on a PAN + MS pair: the two-branch network (``network``), its
patch pairs, their augmentation and dense tiled prediction (``patches``), and the
train-mrfusion and classify-mrfusion commands (``commands``)."""
