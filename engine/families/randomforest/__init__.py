"""The Random Forest baseline on any source the deep families take: the trained forest as plain
arrays, predicted by scikit-learn's trees rebuilt from them (``forest``), per-pixel feature
vectors (``pixelfeatures``), and the train-randomforest and classify-randomforest commands
(``commands``)."""
