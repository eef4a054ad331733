"""Bidirectional residual LSTM over sequences of frame features.

Reference:
    Xu et al., EmotiW 2017, Sec. III-D: stacked bidirectional LSTM layers with
    residual connections over 128 VGG-Face ``fc6`` vectors (4096-d) of a clip;
    softmax at the last time step; Adam, learning rate 1e-3, batch 32.

Structure: ``masking`` (all-zero frames are missing: padding at the end of a
short clip, or frames without a face) -> ``input_proj`` (a linear map to
``2 * units``, only when the feature size differs, so that the residual sums
match) -> ``num_layers`` times ``bilstm{i}`` (``Bidirectional(LSTM(units))``,
forward and backward outputs concatenated) -> ``bilstm{i}_dropout`` ->
``residual{i}`` (its input added back).

The last time step: on the top layer the LSTMs return their final states
instead of sequences. Under the mask, the forward final state is the one at
the last *valid* frame, and the backward LSTM has read the whole clip back to
its first frame, so both halves summarise the full clip (the backward output
*at* the last frame would have seen one frame only). Its residual input is
the previous layer's output at the last valid frame (:class:`MaskedTimePooling`
with ``mode="last"``).

Feature taps (layer names):
    ``features`` (``2 * units``: last-step summary, input of the classifier),
    ``predictions``; without the top, the model outputs the per-frame
    sequence ``(batch, T, 2 * units)`` or, with ``pooling``, its masked
    mean / max over valid frames (layer ``pool``).
"""

import keras
from keras import layers, ops

from kemo.models._common import build_input, load_builder_weights, validate_builder_args

MODES = ("last", "avg", "max")


@keras.saving.register_keras_serializable(package="kemo")
class MaskedTimePooling(layers.Layer):
    """Pool ``(batch, T, D)`` over time, ignoring masked (missing) steps.

    Args:
        mode: ``"last"`` (the last valid step), ``"avg"`` or ``"max"`` over
            valid steps. A sequence with no valid step gives zeros.
        **kwargs: Standard ``keras.layers.Layer`` arguments (``name``...).

    Example:
        >>> x = keras.ops.ones((2, 5, 3))
        >>> MaskedTimePooling("last")(x).shape
        (2, 3)
    """

    def __init__(self, mode="last", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"MaskedTimePooling: mode must be one of {MODES}; received {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        """Pool ``inputs`` over axis 1 using the Keras mask of valid steps."""
        if mask is None:
            valid = ops.ones_like(inputs[..., 0])
        else:
            valid = ops.cast(mask, inputs.dtype)
        if self.mode == "last":
            # Step numbers 1..T; the last valid one is the largest kept number.
            steps = ops.cumsum(ops.ones_like(valid), axis=1)
            last = ops.max(steps * valid, axis=1, keepdims=True)
            pick = ops.cast(ops.equal(steps, last), inputs.dtype) * valid
            return ops.sum(inputs * pick[..., None], axis=1)
        if self.mode == "avg":
            total = ops.sum(inputs * valid[..., None], axis=1)
            count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
            return total / count
        lowest = ops.min(inputs) - 1.0
        masked = ops.where(valid[..., None] > 0, inputs, lowest)
        # Sequences with no valid step give zeros, like the other modes.
        return ops.max(masked, axis=1) * ops.cast(ops.max(valid, axis=1, keepdims=True) > 0,
                                                   inputs.dtype)

    def compute_mask(self, inputs, mask=None):
        """The pooled output has no time axis, hence no mask."""
        return None

    def compute_output_shape(self, input_shape):
        """``(batch, T, D) -> (batch, D)``."""
        return (input_shape[0], input_shape[2])

    def get_config(self):
        """Return the layer config (adds ``mode``)."""
        return {**super().get_config(), "mode": self.mode}


def BiResidualLSTM(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=7,
    classifier_activation="softmax",
    name="bi_residual_lstm",
    units=256,
    num_layers=2,
    dropout=0.2,
):
    """Build the bidirectional residual LSTM.

    Args:
        include_top: Summarise at the last time step (``features``) and
            classify (``predictions``). Without it see ``pooling``.
        weights: ``None`` (random init), a registered name or a weights file
            path. When ``classes`` differs from the file's, ``predictions``
            keeps its initial weights (with a warning).
        input_tensor: Optional Keras tensor of frame-feature sequences.
        input_shape: ``(T, D)``; ``T`` may be ``None`` for any length. Paper:
            ``(128, 4096)``, the default. Shorter clips are zero-padded at the
            end; zero frames are masked.
        pooling: With ``include_top=False``: ``None`` (the sequence
            ``(batch, T, 2 * units)``), ``"avg"`` or ``"max"`` over valid frames.
        classes: Number of emotion classes.
        classifier_activation: Activation of ``predictions``; ``None`` for logits.
        name: Model name.
        units: LSTM units per direction; layer outputs have ``2 * units``.
        num_layers: Number of bidirectional layers (at least 1).
        dropout: Dropout rate on each layer's output before the residual sum.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: On an invalid argument; the message repeats the value.
        kemo.errors.WeightsError: Unknown weights name, missing file, hash
            mismatch, or a file that does not fit.

    Example:
        >>> model = BiResidualLSTM(input_shape=(None, 4096), units=128)
        >>> model.get_layer("features").output.shape
        (None, 256)
    """
    input_shape = validate_builder_args(
        "BiResidualLSTM", include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        default_shape=(128, 4096), classifier_activation=classifier_activation, name=name,
    )
    for key, value in (("units", units), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"BiResidualLSTM: {key} must be a positive int; received {value!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"BiResidualLSTM: dropout must be in [0, 1); received {dropout!r}")
    if input_shape[1] is None:
        raise ValueError(f"BiResidualLSTM: the feature size D of input_shape=(T, D) must be "
                         f"known; received {input_shape!r}")

    inputs, x = build_input(input_tensor, input_shape)
    x = layers.Masking(mask_value=0.0, name="masking")(x)
    if input_shape[1] != 2 * units:
        x = layers.Dense(2 * units, name="input_proj")(x)
    summarise = include_top  # the top layer returns last-step states, not sequences
    for i in range(1, num_layers + 1):
        last = summarise and i == num_layers
        y = layers.Bidirectional(layers.LSTM(units, return_sequences=not last),
                                 name=f"bilstm{i}")(x)
        y = layers.Dropout(dropout, name=f"bilstm{i}_dropout")(y)
        if last:
            x = MaskedTimePooling("last", name=f"residual{i}_last")(x)
        x = layers.Add(name="features" if last else f"residual{i}")([x, y])

    if include_top:
        x = layers.Dense(classes, activation=classifier_activation, dtype="float32",
                         name="predictions")(x)
    elif pooling is not None:
        x = MaskedTimePooling(pooling, name="pool")(x)

    model = keras.Model(inputs, x, name=name)
    load_builder_weights(model, weights, architecture="BiResidualLSTM", head=("predictions",))
    return model
