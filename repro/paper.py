"""The paper's own figures for its architecture, as data (paper §3.5, Figure 2, §1).

Ablation claims (each with its value, section and quote) live beside their ablation in
`ablations/*.toml`; this module holds what `repro spec` compares a model against.
"""

from __future__ import annotations

# Figure 2 caption: "The network's input is 150,528-dimensional, and the number of neurons in
# the network's remaining layers is given by 253,440-186,624-64,896-64,896-43,264-4096-4096-1000."
INPUT_NEURONS = 150_528
LAYER_NEURONS = {
    "conv1": 253_440,  # printed; but 55 x 55 x 96 = 290,400, and 253,440 / 96 = 2,640 is no square
    "conv2": 186_624,  # 27 x 27 x 256
    "conv3": 64_896,  # 13 x 13 x 384
    "conv4": 64_896,
    "conv5": 43_264,  # 13 x 13 x 256
    "fc6": 4096,
    "fc7": 4096,
    "fc8": 1000,
}
# §1 / §3.5: "60 million parameters and 650,000 neurons"
PARAMS_ROUNDED = 60_000_000
NEURONS_ROUNDED = 650_000
# Exact count for the paper's grouped net at 1000 classes [calc, facts §3]
PARAMS_EXACT = 60_965_224
# Footnote 2's one-GPU net (48-128-192-192-256, FC unchanged) [calc, facts §2]
ONE_GPU_PARAMS_EXACT = 59_798_312

CONV1_NOTE = (
    "the paper prints 253,440 conv1 neurons, but its own 55x55x96 maps hold 290,400 "
    "(253,440 / 96 = 2,640 is not a square number); we count 290,400"
)
