"""Argument checks and weight loading shared by every kemo model builder."""

import os

import keras


def validate_builder_args(
    builder,
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    default_shape,
    min_size=None,
    classifier_activation="softmax",
    name="model",
):
    """Check the arguments common to every builder and return the input shape to use.

    Args:
        builder: Builder name, used in error messages and checked against the
            architecture of registered weights.
        include_top: As received by the builder.
        weights: As received by the builder.
        input_tensor: As received by the builder.
        input_shape: As received by the builder.
        pooling: As received by the builder.
        classes: As received by the builder.
        default_shape: Input shape when neither ``input_shape``,
            ``input_tensor`` nor registered weights give one.
        min_size: Smallest accepted spatial side, or ``None``.
        classifier_activation: As received by the builder.
        name: As received by the builder (the model name).

    Returns:
        The input shape, a tuple.

    Raises:
        ValueError: Naming the argument and repeating the value received.
        kemo.errors.WeightsError: When ``weights`` is neither an existing file
            nor a registered name, or names weights of another architecture
            (checked here, before any layer is built).
    """
    if not isinstance(include_top, bool):
        raise ValueError(f"{builder}: include_top must be True or False; received {include_top!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{builder}: pooling must be None, 'avg' or 'max'; received {pooling!r}")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"{builder}: classes must be a positive int; received {classes!r}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"{builder}: weights must be None, a registered name or a file path; "
            f"received {weights!r}"
        )
    if not isinstance(name, str) or not name:
        raise ValueError(f"{builder}: name must be a non-empty str; received {name!r}")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{builder}: classifier_activation must be None, a Keras activation name or a "
            f"callable; received {classifier_activation!r}"
        ) from exc
    info = _registered_weights(builder, weights)
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None and info is not None:
        input_shape = info.input_shape
    if input_shape is None:
        input_shape = default_shape
    input_shape = tuple(input_shape)
    if len(input_shape) != len(default_shape) or any(
        d is not None and (not isinstance(d, int) or d < 1) for d in input_shape
    ):
        raise ValueError(
            f"{builder}: input_shape must have {len(default_shape)} positive ints like "
            f"{default_shape}; received {input_shape!r}"
        )
    if min_size is not None and any(d is not None and d < min_size for d in input_shape[-3:-1]):
        raise ValueError(
            f"{builder}: input height and width must be at least {min_size}; "
            f"received input_shape={input_shape!r}"
        )
    return input_shape


def _registered_weights(builder, weights):
    """Return the registry entry named by ``weights``; ``None`` for no weights or a file."""
    if weights is None:
        return None
    from kemo import weights as registry

    return registry.lookup(weights, builder)


def check_fixed_shape(builder, input_shape, what="include_top=True"):
    """Raise ``ValueError`` unless every axis of ``input_shape`` is known (Flatten needs it)."""
    if any(d is None for d in input_shape):
        raise ValueError(
            f"{builder}: {what} needs a fully known input_shape; received {input_shape!r}"
        )


def build_input(input_tensor, input_shape):
    """Return ``(model_inputs, first_tensor)`` for a functional builder."""
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="input")
        return inputs, inputs
    if not keras.backend.is_keras_tensor(input_tensor):
        inputs = keras.Input(tensor=input_tensor, shape=input_shape, name="input")
        return inputs, inputs
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def load_builder_weights(model, weights, *, architecture, head=(), aliases=None):
    """Load ``weights`` (None, a registered name or a file path) into ``model``.

    Args:
        model: The freshly built model.
        weights: ``None``, a registered name or a file path.
        architecture: Builder name, checked against a registered entry.
        head: Classifier layers that may keep their initial weights when the
            file's class count differs (see :func:`kemo.weights.load_into`).
        aliases: ``{file layer name: model layer name}`` for Keras 2 files.

    Raises:
        kemo.errors.WeightsError: When the file is missing, fails its sha256
            check or does not fit the architecture.
    """
    if weights is None:
        return
    from kemo import weights as registry

    registry.load_into(model, weights, architecture=architecture, head=head, aliases=aliases)
