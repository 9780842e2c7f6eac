"""Regenerate the tlslog golden corpus from real servers (Apache mod_ssl, nginx, HAProxy).

Run `python -m tests.corpus.build` (as root: the servers run as www-data so that file
permissions bite). See tests/data/README.md for what each file holds and how its truth
was counted.
"""
