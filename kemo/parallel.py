"""Videos processed on a Dask cluster: one machine's worker processes, or many machines'.

Each video is independent, and finding its faces (about 30 ms a frame) is most of the cost, so a
batch spreads over the workers of a `Dask <https://distributed.dask.org>`_ cluster, one task per
video. Install the extra first: ``pip install "kemo[dask]"``.

From Python, :func:`using` runs every video estimator of kemo on a cluster within a block
(:class:`kemo.VideoEmotionRecognizer` ``fit`` / ``predict`` / ``predict_proba`` /
``frame_features`` / ``analyze``): the faces are found on the workers, the rest runs here as in
a serial run, so the results are the same (labels, probabilities to float rounding, order, and
the failures of bad videos, word for word)::

    from kemo import VideoEmotionRecognizer, parallel

    rec = VideoEmotionRecognizer(errors="skip")
    with parallel.using("local:2"):          # 2 worker processes on this machine
        proba = rec.predict_proba(paths)
    with parallel.using("tcp://head:8786"):  # a running scheduler (`dask scheduler`)
        proba = rec.predict_proba(paths)

:func:`using` also takes a ``distributed.Client`` (e.g. of a dask-jobqueue or
dask-kubernetes cluster). On the command line, the batch commands take ``--scheduler ADDRESS``.

Each worker process unpickles and sets up the face stage (or recogniser) of a batch once, loading
its models then, and reuses it for every video of the batch, and of later batches with the same
settings. A worker that dies midway (killed, out of memory) loses nothing: the scheduler runs
its videos again on the other workers, and each video's result is taken once. Workers read the
videos by path, so the paths must mean the same file on every machine (a shared folder), as must
a face cache (``--cache``), which several workers may write at once (each file is written to a
temporary name, then renamed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import warnings

from kemo.errors import InputError, KemoError

#: How a scheduler is named: ``local:N`` (N worker processes here) or a scheduler's address.
ADDRESS_FORMS = "local:N (N worker processes on this machine) or tcp://HOST:PORT"

_ACTIVE = []  # the clients of the open `using` blocks, innermost last
_LOCAL = re.compile(r"^local:(\d+)$")
_REMOTE = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/:]+(:\d+)?/?$")

# In a worker process: set-up objects by the digest of their pickle (the models they hold are
# loaded once per process); how many were set up and how many videos ran (tests read them).
_STATES = {}
_BAD_VIDEO = (KemoError, OSError, ValueError)  # what a serial batch reports and goes on after
_MAX_STATES = 4
loads = runs = 0


def check_address(address):
    """Return ``address`` when it has the form of :data:`ADDRESS_FORMS`.

    Raises:
        InputError: another form, or ``local:0``.
    """
    match = _LOCAL.match(str(address))
    if match is not None:
        if int(match.group(1)) < 1:
            raise InputError(f"scheduler {address!r}: local:N needs at least 1 worker")
        return str(address)
    if _REMOTE.match(str(address)) is None:
        raise InputError(f"scheduler must be {ADDRESS_FORMS}, got {address!r}")
    return str(address)


def connect(address, threads=1):
    """A ``distributed.Client`` of a new local cluster or of a running scheduler.

    Args:
        address: ``"local:N"`` starts a LocalCluster of N worker processes (closed with the
            client); ``"tcp://HOST:PORT"`` joins the scheduler there (it waits for it up to
            Dask's ``distributed.comm.timeouts.connect``, 30 s unless set, e.g. with
            ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
        threads: threads of each local worker, for its tasks and TensorFlow's operations
            (default 1: processes, not threads, use the cores, as TensorFlow and MTCNN hold
            the GIL for much of a frame).

    Returns:
        distributed.Client: close it (``client.close()``) when done; :func:`using` does.

    Raises:
        InputError: a malformed address, Dask not installed, or no scheduler at the address.
    """
    address = check_address(address)
    distributed = _distributed()
    match = _LOCAL.match(address)
    if match is not None:
        import logging

        # TensorFlow sizes its thread pools from these when it starts in each worker.
        env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cluster = distributed.LocalCluster(
            n_workers=int(match.group(1)), threads_per_worker=threads, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR, env=env)
        client = distributed.Client(cluster)
        client._kemo_cluster = cluster  # closed with the client (see close)
        return client
    try:
        return distributed.Client(address)
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"cannot reach the Dask scheduler at {address} ({reason}); start "
                         f"one there (`dask scheduler`) or use local:N") from None


def close(client):
    """Close a client made by :func:`connect`, and its local cluster if it started one."""
    cluster = getattr(client, "_kemo_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def using(scheduler):
    """Run kemo's video estimators on a Dask cluster within the ``with`` block.

    Args:
        scheduler: an address (see :func:`connect`: ``"local:N"``, ``"tcp://HOST:PORT"``),
            whose client is closed when the block ends, or a ``distributed.Client``, left open.

    Yields:
        distributed.Client: the client in use.

    Raises:
        InputError: see :func:`connect`.

    Example:
        >>> with kemo.parallel.using("local:2"):  # doctest: +SKIP
        ...     labels = VideoEmotionRecognizer().predict(paths)
    """
    own = isinstance(scheduler, str)
    client = connect(scheduler) if own else scheduler
    _ACTIVE.append(client)
    try:
        yield client
    finally:
        _ACTIVE.remove(client)
        if own:
            close(client)


def active():
    """The client of the innermost open :func:`using` block, or None (serial)."""
    return _ACTIVE[-1] if _ACTIVE else None


class VideoMap:
    """``function(state, video)`` of every video, each a task of the cluster.

    ``state`` (e.g. a face stage or a recogniser) is pickled once here; each worker process
    unpickles and sets it up once (``setup``), then reuses it for all its videos.

    Args:
        client: a ``distributed.Client``.
        function: a module-level function ``(state, video) -> result`` (run on the workers).
        state: the picklable object it needs; its cached fitted state is not sent.
        videos: ``{index: video}``: the videos to run, by the caller's index.
        setup: a module-level function that readies ``state`` on a worker (e.g. fits it), or
            None.
    """

    def __init__(self, client, function, state, videos, setup=None):
        blob = pickle.dumps(state)
        token = hashlib.sha256(blob).hexdigest()
        # pure=False: a video given twice is computed twice, as in a serial run.
        self._futures = {i: client.submit(_run, function, setup, token, blob, video,
                                          pure=False)
                         for i, video in videos.items()}

    def __contains__(self, index):
        return index in self._futures

    def result(self, index):
        """The result of video ``index``; raises the exception it raised on its worker."""
        future = self._futures.pop(index)  # taken once: its memory on the worker is freed
        result = future.result()
        if isinstance(result, _Failed):
            raise result.error
        return result

    def outcomes(self):
        """``{index: result or the exception raised}``, once every video is done."""
        out = {}
        for index in list(self._futures):
            try:
                out[index] = self.result(index)
            except Exception as exc:  # noqa: BLE001 - the caller reports it as a serial run does
                out[index] = exc
        return out

    def cancel(self):
        """Cancel the videos not taken yet (the batch was interrupted)."""
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()


def find_faces(prep, videos):
    """Faces of ``videos`` found on the active cluster, or None when none is in use.

    Args:
        prep: a :class:`kemo.faces.FacePreprocessor` (fitted or not).
        videos: ``{index: video path or frame array}``.

    Returns:
        ``{index: VideoFaces or the exception its video raised}``, or None without
        :func:`using`.
    """
    client = active()
    if client is None or not videos:
        return None
    jobs = VideoMap(client, transform_faces, portable_faces(prep), videos, setup=fit)
    try:
        return jobs.outcomes()
    finally:
        jobs.cancel()


def portable_faces(prep):
    """An unfitted copy of a face stage to send to workers (no detector, no progress bars)."""
    from sklearn.base import clone

    return clone(prep).set_params(verbose=False)


# ----------------------------------------------------------------------------- on the workers


def _run(function, setup, token, blob, video):
    """Run ``function`` on the worker's copy of the state ``blob`` (set up on first use)."""
    global loads, runs

    runs += 1
    state = _STATES.get(token)
    if state is None:
        from kemo._tensorflow import import_quietly

        import_quietly()
        state = pickle.loads(blob)
        if setup is not None:
            state = setup(state)
        if len(_STATES) >= _MAX_STATES:  # settings of older batches: free their models
            _STATES.pop(next(iter(_STATES)))
        _STATES[token] = state
        loads += 1
    try:
        return function(state, video)
    except _BAD_VIDEO as exc:
        # an expected failure, returned rather than raised: Dask would log each bad video
        # as a crash of the worker with its traceback
        return _Failed(exc)


class _Failed:
    """A bad video's exception, carried back as a task's result."""

    def __init__(self, error):
        self.error = error


def fit(estimator):
    """``estimator.fit()``: sets up a face stage on a worker (loads its detector)."""
    return estimator.fit()


def transform_faces(prep, video):
    """The VideoFaces of one video (the caller warns about videos without a face)."""
    from kemo.faces import NoFaceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoFaceWarning)
        return prep.transform([video])[0]


def _distributed():
    """The ``distributed`` package, or an InputError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise InputError('running on a Dask cluster needs Dask: pip install "kemo[dask]" '
                         "(dask.distributed)") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return distributed


def portable_recognizer(rec):
    """A copy of a recogniser to send to workers: no fitted face stage, no progress bars."""
    import copy

    state = copy.copy(rec)
    state.__dict__.pop("faces_", None)  # the fitted detector: each worker builds its own
    state.verbose = False
    if state.faces is not None:
        state.faces = portable_faces(state.faces)
    return state


def analyze(job, video):
    """``rec.analyze(video, tracks)`` for ``job = (rec, tracks)``: a VideoAnalysis."""
    rec, tracks = job
    return rec.analyze(video, tracks=tracks)


def frame_features(rec, video):
    """``rec.frame_features([video])[0]``: the frame features of one video, by network."""
    return rec.frame_features([video])[0]
