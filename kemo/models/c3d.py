"""C3D spatio-temporal network (Tran et al. 2015) and its clip windows.

Reference:
    D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri, "Learning
    Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015.
    Xu et al., EmotiW 2017, use its ``fc`` activations (4096-d) of face clips
    with a linear SVM.

Architecture: eight 3x3x3 convolutions (``conv1a`` 64, ``conv2a`` 128,
``conv3a``/``conv3b`` 256, ``conv4a``/``conv4b`` 512, ``conv5a``/``conv5b``
512), five max pools (``pool1`` 1x2x2 keeps time; the others 2x2x2), ``fc6``
and ``fc7`` (4096, ReLU), ``fc8``. As in the original Caffe model,
``pool5_pad`` pads height and width by one so that a 16x112x112 clip gives a
1x4x4x512 ``pool5``. The Keras port of the Sports-1M weights
(``"c3d_sports1m"``) names the first two convolutions ``conv1`` / ``conv2``;
the loader maps them.

Feature taps (layer names):
    ``fc6`` (4096, after ReLU, the usual C3D feature), ``fc7`` (4096),
    ``fc8`` (class logits), ``predictions``; without the top ``pool5`` or
    ``pool`` (512, with ``pooling``).

Long clips: C3D sees 16 frames at a time. The paper feeds 128-frame face
clips; kemo, like Tran et al., cuts a clip into 16-frame windows
(:func:`clip_windows`, 8-frame overlap by default), takes each window's
``fc6`` and averages them into one 4096-d clip feature (see the example of
:func:`clip_windows`).
"""

import keras
import numpy as np
from keras import layers

from kemo.errors import InputError
from kemo.models._common import (
    build_input,
    check_fixed_shape,
    load_builder_weights,
    validate_builder_args,
)

#: (name, filters) of the eight convolutions, with the pool that follows each block.
CONVS = (
    (("conv1a", 64),),
    (("conv2a", 128),),
    (("conv3a", 256), ("conv3b", 256)),
    (("conv4a", 512), ("conv4b", 512)),
    (("conv5a", 512), ("conv5b", 512)),
)

#: Layer names of the Keras Sports-1M port that differ from the paper's.
SPORTS1M_ALIASES = {"conv1": "conv1a", "conv2": "conv2a"}

#: Frames in one C3D window.
CLIP_LENGTH = 16


def C3D(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=7,
    classifier_activation="softmax",
    name="c3d",
    dropout=0.5,
):
    """Build C3D.

    Args:
        include_top: Keep ``flatten -> fc6 -> fc7 -> fc8 -> predictions``.
            Without it the model ends at ``pool5`` (see ``pooling``).
        weights: ``None`` (random init), ``"c3d_sports1m"`` (Sports-1M, 487
            classes) or the path of a weights file. When ``classes`` differs
            from the file's, ``fc8`` keeps its initial weights (with a warning).
        input_tensor: Optional Keras tensor to use as the clip input.
        input_shape: ``(frames, H, W, 3)``: at least 16 frames and 16 pixels a
            side; with the top it must be fully known (and 16x112x112x3 for the
            Sports-1M weights). Defaults to ``(16, 112, 112, 3)``.
        pooling: With ``include_top=False``: ``None`` (5-D ``pool5``), ``"avg"``
            or ``"max"`` (global pooling to ``(batch, 512)``).
        classes: Outputs of ``fc8`` (Sports-1M: 487; emotions: 7).
        classifier_activation: Activation of ``predictions``; ``None`` for logits.
        name: Model name.
        dropout: Dropout rate after ``fc6`` and ``fc7`` (0.5 as in the paper).

    Returns:
        A ``keras.Model`` (79,991,015 parameters with 487 classes at 16x112x112x3).

    Raises:
        ValueError: On an invalid argument; the message repeats the value.
        kemo.errors.WeightsError: Unknown weights name, missing file, hash
            mismatch, or a file that does not fit.

    Example:
        >>> model = C3D(classes=7)
        >>> model.get_layer("fc6").output.shape
        (None, 4096)
    """
    input_shape = validate_builder_args(
        "C3D", include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        default_shape=(CLIP_LENGTH, 112, 112, 3), min_size=16,
        classifier_activation=classifier_activation, name=name,
    )
    if input_shape[0] is not None and input_shape[0] < CLIP_LENGTH:
        raise ValueError(f"C3D: clips need at least {CLIP_LENGTH} frames (four 2x time "
                         f"poolings); received input_shape={input_shape!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"C3D: dropout must be in [0, 1); received dropout={dropout!r}")
    if include_top:
        check_fixed_shape("C3D", input_shape)

    inputs, x = build_input(input_tensor, input_shape)
    for block, convs in enumerate(CONVS, start=1):
        for conv_name, filters in convs:
            x = layers.Conv3D(filters, 3, padding="same", activation="relu", name=conv_name)(x)
        if block == 5:
            x = layers.ZeroPadding3D((0, 1, 1), name="pool5_pad")(x)
        pool = (1, 2, 2) if block == 1 else (2, 2, 2)
        x = layers.MaxPooling3D(pool, strides=pool, name=f"pool{block}")(x)

    if include_top:
        x = layers.Flatten(name="flatten")(x)
        for fc in ("fc6", "fc7"):
            x = layers.Dense(4096, activation="relu", name=fc)(x)
            x = layers.Dropout(dropout, name=f"{fc}_dropout")(x)
        x = layers.Dense(classes, name="fc8")(x)
        x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling3D(name="pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling3D(name="pool")(x)

    model = keras.Model(inputs, x, name=name)
    load_builder_weights(model, weights, architecture="C3D", head=("fc8",),
                         aliases=SPORTS1M_ALIASES)
    return model


def clip_windows(frames, length=CLIP_LENGTH, stride=CLIP_LENGTH // 2):
    """Cut a clip into fixed-length, possibly overlapping windows for C3D.

    Windows start every ``stride`` frames; when the last one would stop short
    of the clip's end, one more window ending on the last frame is added, so
    every frame is seen. A clip shorter than ``length`` is padded by repeating
    its last frame.

    Args:
        frames: ``(T, ...)`` array, e.g. ``(T, 112, 112, 3)`` face crops.
        length: Frames per window (16 for C3D).
        stride: Frames between window starts (8: the half overlap of Tran et al.;
            ``length`` for disjoint windows).

    Returns:
        ``(n_windows, length, ...)`` array (a copy, same dtype).

    Raises:
        kemo.errors.InputError: On an empty clip.
        ValueError: When ``length`` or ``stride`` is not a positive int.

    Example:
        Average the ``fc6`` features of a 128-frame clip's windows::

            windows = clip_windows(frames)               # (15, 16, 112, 112, 3)
            fc6 = keras.Model(model.input, model.get_layer("fc6").output)
            feature = fc6.predict(preprocess_input(windows)).mean(axis=0)  # (4096,)
    """
    for key, value in (("length", length), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"clip_windows: {key} must be a positive int; received {value!r}")
    frames = np.asarray(frames)
    if frames.ndim < 1 or len(frames) == 0:
        raise InputError(f"clip_windows: frames must be a non-empty (T, ...) array; "
                         f"received shape {frames.shape}")
    if len(frames) < length:
        pad = np.repeat(frames[-1:], length - len(frames), axis=0)
        frames = np.concatenate([frames, pad])
    starts = list(range(0, len(frames) - length + 1, stride))
    if starts[-1] + length < len(frames):
        starts.append(len(frames) - length)
    return np.stack([frames[s:s + length] for s in starts])


def preprocess_input(clips):
    """Prepare RGB clips, 0..255, for the Sports-1M C3D weights.

    Converts to BGR and subtracts the Sports-1M channel means, as the
    ``"c3d_sports1m"`` registry entry says.

    Args:
        clips: ``(..., H, W, 3)`` RGB pixel values.

    Returns:
        A float32 array of the same shape.
    """
    from kemo import weights as registry

    return registry.get("c3d_sports1m").preprocess(clips)
