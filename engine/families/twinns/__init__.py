"""TWINNS (Ienco et al. 2019) on a Sentinel-1 and a Sentinel-2 time series: the twin CNN + RNN
network with attention (``network``), its patches and batched patch prediction (``patches``), and
the train-twinns, classify-twinns and attention-twinns commands (``commands``)."""
