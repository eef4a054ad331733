"""``kemo live``: emotions of a camera or a stream as it plays (see :mod:`kemo.live`)."""


def check_live(args):
    """Check the source and options of ``kemo live`` (see :func:`kemo.live.check`)."""
    from kemo.live import check

    check(args)


def run_live(args):
    """Run ``kemo live`` (see :func:`kemo.live.run`); return the exit status."""
    from kemo.live import run

    return run(args)
