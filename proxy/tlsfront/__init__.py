"""tlsfront: a TLS front end for legacy HTTP applications (Twisted + pyOpenSSL)."""

__version__ = "0.1.0"
