"""`item benchmark`: speed, measured on the real architectures with random weights (never accuracy).

    timing.py     the one place that times: minimum over repeats, CPU time, peak memory, machine
    networks.py   real-size (or tiny) random networks wired into ITEM with a profile's or lever's settings
    pipeline.py   each stage alone, the whole pipeline, a UniversalFakeDetect-style one-pass baseline
    agreement.py  how closely a faster variant reproduces the default (embeddings, fake probability, boxes)
    run.py        what one `item benchmark` run measures, and its Markdown report
    backbones.py  the cost of each backbone family's forward_features
    training.py   head training on cached features against training through the frozen networks
"""
