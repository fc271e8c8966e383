"""xlnet-edge toolkit: distil, quantize, export and validate a fine-tuned XLNet classifier for ARM devices."""

__version__ = "0.1.0"
