"""Weight files shipped with kemo and their model cards (installed as ``kemo.shipped``)."""
