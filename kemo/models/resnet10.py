"""ResNet-10 frame model (Simon et al. 2016) with the paper's extra ``fc1`` layer.

Reference:
    M. Simon, E. Rodner, J. Denzler, "ImageNet pre-trained models with batch
    normalization", arXiv:1612.01452, 2016 (ResNet-10: a stem and four stages of
    one basic residual block each). Xu et al., EmotiW 2017, add a 512-d fully
    connected layer ``fc1`` between global pooling and the classifier and use it
    as the frame feature.

Feature taps (layer names):
    ``pool`` (global average pool, 8 x width), ``fc1`` (512, after ReLU): the
    paper's frame feature, ``predictions`` (classes).
"""

import keras
from keras import layers

from kemo.models._common import build_input, load_builder_weights, validate_builder_args

#: Widths of the four residual stages, as in ResNet-18/34.
WIDTHS = (64, 128, 256, 512)


def _block(x, filters, stride, name):
    """One basic residual block: two 3x3 convolutions, projection shortcut when shapes change."""
    shortcut = x
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def ResNet10(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=7,
    classifier_activation="softmax",
    name="resnet10",
    stem=None,
    dropout=0.5,
    width=None,
):
    """Build a ResNet-10 with the paper's 512-d ``fc1`` feature layer.

    Reference:
        Xu et al., "Video-based Emotion Recognition using Aggregated Features
        and Spatio-temporal Information", EmotiW 2017, Sec. III-B.

    Args:
        include_top: Keep ``pool -> fc1 -> dropout -> predictions``. Without it
            the model ends at the last residual stage (see ``pooling``).
        weights: ``None`` (random init), the name of a registered weights entry
            (see :mod:`kemo.weights`) or the path of a weights file. When
            ``classes`` differs from the file's, ``predictions`` keeps its
            initial weights (with a warning).
        input_tensor: Optional Keras tensor to use as the image input.
        input_shape: ``(H, W, C)``, both sides at least 32 (paper: 150x150x3;
            FER2013: 48x48x1). Defaults to the registered weights' input shape,
            else ``(150, 150, 3)``.
        pooling: With ``include_top=False``: ``None`` (4-D feature map),
            ``"avg"`` or ``"max"`` (global pooling to ``(batch, 512)``).
        classes: Number of output classes (7 FER2013 emotions).
        classifier_activation: Activation of ``predictions``; ``None`` for logits.
        name: Model name.
        stem: ``"imagenet"`` (7x7/2 convolution + 3x3/2 max pool, for inputs of
            96 px and up), ``"small"`` (3x3/2 convolution, no pool, for
            48-64 px faces) or ``"full"`` (3x3/1 convolution: the first stage at the
            input resolution, 4x the computation of ``"small"``). ``None`` picks
            ``"imagenet"`` or ``"small"`` by input size, or the one the weights were
            trained with.
        dropout: Dropout rate between ``fc1`` and ``predictions``.
        width: Multiplier of the stem and stage widths (64, 128, 256, 512); ``fc1``
            stays 512-d. ``None``: the weights' own width
            (:func:`kemo.weights.builder_options`), else 1.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: On an invalid argument; the message repeats the value.

    Example:
        >>> model = ResNet10(input_shape=(48, 48, 1))
        >>> model.get_layer("fc1").output.shape
        (None, 512)
    """
    input_shape = validate_builder_args(
        "ResNet10", include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        default_shape=(150, 150, 3), min_size=32,
        classifier_activation=classifier_activation, name=name,
    )
    if stem not in (None, "imagenet", "small", "full"):
        raise ValueError(
            f"stem must be None, 'imagenet', 'small' or 'full'; received stem={stem!r}")
    if width is not None and (not isinstance(width, (int, float)) or not 0.0 < width <= 4.0):
        raise ValueError(f"width must be in (0, 4]; received width={width!r}")
    if weights is not None:
        width, stem = _weights_shape(weights, width, stem)
    width = 1.0 if width is None else width
    widths = [max(8, int(round(w * width))) for w in (64, *WIDTHS)]
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); received dropout={dropout!r}")
    if stem is None:
        stem = "imagenet" if min(input_shape[:2]) >= 96 else "small"

    inputs, x = build_input(input_tensor, input_shape)
    if stem == "imagenet":
        x = layers.Conv2D(widths[0], 7, strides=2, padding="same", use_bias=False,
                          name="conv1")(x)
        x = layers.BatchNormalization(name="conv1_bn")(x)
        x = layers.ReLU(name="conv1_relu")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    else:
        x = layers.Conv2D(widths[0], 3, strides=1 if stem == "full" else 2, padding="same",
                          use_bias=False, name="conv1")(x)
        x = layers.BatchNormalization(name="conv1_bn")(x)
        x = layers.ReLU(name="conv1_relu")(x)
    for i, filters in enumerate(widths[1:]):
        x = _block(x, filters, stride=1 if i == 0 else 2, name=f"stage{i + 1}")

    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(512, activation="relu", name="fc1")(x)
        x = layers.Dropout(dropout, name="fc1_dropout")(x)
        # float32 output keeps softmax stable under a mixed-precision policy.
        x = layers.Dense(classes, activation=classifier_activation, dtype="float32",
                         name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="pool")(x)

    model = keras.Model(inputs, x, name=name)
    load_builder_weights(model, weights, architecture="ResNet10", head=("predictions",))
    return model


def _weights_shape(weights, width, stem):
    """``(width, stem)`` of ``weights`` (stored with them, else the shipped shape); refuse others.

    A full stem has the same kernels as a strided one, so only the stored options tell
    them apart; a width that differs would also fail the shape check on loading.
    """
    from kemo.weights import builder_options

    stored = builder_options(weights, "ResNet10")
    have = {"width": stored.get("width", 1.0), "stem": stored.get("stem")}
    for key, value in (("width", width), ("stem", stem)):
        differs = value is not None and value != have[key]
        if key == "stem" and have["stem"] is None:
            differs = value == "full"  # no record: the shipped 3x3/2 (or 7x7/2) stem
        if differs:
            shown = have[key] or "strided (3x3/2 or 7x7/2)"
            raise ValueError(f"weights {weights!r} hold a ResNet-10 of {key} {shown}; received "
                             f"{key}={value!r} (leave {key} unset to use theirs)")
    return have["width"], stem if stem is not None else have["stem"]


def shape_options(model):
    """The builder options that rebuild ``model``'s shape, beyond the shipped ResNet-10's.

    ``{}`` for width 1 with a strided stem (and for models without ResNet-10 layers), else
    e.g. ``{"width": 0.5, "stem": "full"}``: what :func:`kemo.training.export_weights`
    stores with a model's weights.
    """
    names = {layer.name for layer in model.layers}
    if not {"conv1", "stage4_conv2"} <= names:
        return {}
    conv1 = model.get_layer("conv1")
    # the widest stage gives the finest multiplier; rounding must give back every width
    width = model.get_layer("stage4_conv2").filters / WIDTHS[-1]
    widths = [model.get_layer(n).filters
              for n in ("conv1", *(f"stage{i}_conv2" for i in range(1, 5)))]
    if widths != [max(8, int(round(w * width))) for w in (64, *WIDTHS)]:
        raise ValueError(f"{model.name}: widths {widths} are not a ResNet-10's at any one "
                         "width multiplier")
    options = {} if width == 1.0 else {"width": width}
    if tuple(conv1.strides) == (1, 1):
        options["stem"] = "full"
    return options
