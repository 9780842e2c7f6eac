"""tlslog: find, classify and explain TLS and proxy errors in server logs."""

__version__ = "0.1.0"
