"""spin-lite: who does every device on a home network talk to."""

__version__ = "0.1.0"
