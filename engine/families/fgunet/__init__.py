"""FG-UNET (Stoian et al. 2019) on a Sentinel-2-like time series: the network (``network``) and
the train-fgunet and classify-fgunet commands (``commands``)."""
