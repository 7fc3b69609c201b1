"""BRIGHT: the open platform that energy communities run (digital twin nodes and their network)."""

__version__ = "0.1.0"
