"""logah: predict (LoGAH / GHN-3 / GHN-2 hypernetworks) and grow transformer initialisations."""

__version__ = "0.1.0"
