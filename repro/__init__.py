"""repro: AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as the paper describes it, and its ablations."""

__version__ = "0.1.0"
