"""The nets: the paper's AlexNet, its one-GPU comparison net, and Krizhevsky's CIFAR-10 nets."""

from repro.models.registry import ENTRIES, ModelEntry, build, get, make_config, names

__all__ = ["ENTRIES", "ModelEntry", "build", "get", "make_config", "names"]
