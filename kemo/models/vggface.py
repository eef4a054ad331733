"""VGG-Face (VGG16) frame model, with the layer names of the original weights.

Reference:
    O. M. Parkhi, A. Vedaldi, A. Zisserman, "Deep Face Recognition", BMVC 2015.
    Xu et al., EmotiW 2017, fine-tune it on FER2013 then AFEW and use ``fc6``
    (4096-d) as the frame feature.

Layer names follow the Caffe model and keras-vggface (R. C. Malli): ``conv1_1``
... ``conv5_3``, ``pool1`` ... ``pool5``, ``flatten``, ``fc6``, ``fc6_relu``,
``fc7``, ``fc7_relu``, ``fc8``. Keras 3 forbids ``/`` in names, so
keras-vggface's ``fc6/relu`` is ``fc6_relu`` here; its ``.h5`` files load by
layer name (:func:`kemo.weights.load_into` maps the names).

Feature taps (layer names):
    ``fc6`` (4096, before the ReLU, as in keras-vggface), ``fc6_relu`` (4096,
    after it: what Caffe's in-place ``relu6`` leaves in the ``fc6`` blob),
    ``fc7`` / ``fc7_relu`` (4096), ``fc8`` (class logits), ``predictions``
    (``classifier_activation`` of ``fc8``); without the top: ``pool5``
    (7x7x512 at 224) or ``pool`` (512, with ``pooling``).
"""

import keras
from keras import layers

from kemo.models._common import (
    build_input,
    check_fixed_shape,
    load_builder_weights,
    validate_builder_args,
)

#: Convolution widths of the five VGG16 blocks, and convolutions per block.
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def VGGFace(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=7,
    classifier_activation="softmax",
    name="vggface",
    dropout=0.5,
):
    """Build the VGG16 VGG-Face network.

    Args:
        include_top: Keep ``flatten -> fc6 -> fc7 -> fc8 -> predictions``.
            Without it the model ends at ``pool5`` (see ``pooling``).
        weights: ``None`` (random init), a registered name (``"vggface"``: the
            2622-identity VGG-Face weights with top; ``"vggface_notop"``: the
            convolutions only) or the path of a weights file (kemo's
            ``.weights.h5`` / ``.keras``, or a keras-vggface ``.h5``). Files
            with a top also load into a model without one. When ``classes``
            differs from the file's, ``fc8`` keeps its initial weights (a
            warning says so) and everything below it is loaded: the start of
            fine-tuning to emotions.
        input_tensor: Optional Keras tensor to use as the image input.
        input_shape: ``(H, W, 3)``, sides at least 32; with the top it must be
            fully known, and ``(224, 224, 3)`` for the VGG-Face weights.
            Defaults to the registered weights' shape, else ``(224, 224, 3)``.
        pooling: With ``include_top=False``: ``None`` (4-D ``pool5`` map),
            ``"avg"`` or ``"max"`` (global pooling to ``(batch, 512)``).
        classes: Outputs of ``fc8``: 2622 for the original identities, 7 for
            the FER2013 emotions.
        classifier_activation: Activation of ``predictions``; ``None`` for logits.
        name: Model name.
        dropout: Dropout rate after ``fc6_relu`` and ``fc7_relu`` (0.5 in the
            original training; no effect at inference).

    Returns:
        A ``keras.Model`` (145,002,878 parameters with the 2622-class top at
        224x224, 14,714,688 without the top).

    Raises:
        ValueError: On an invalid argument; the message repeats the value.
        kemo.errors.WeightsError: Unknown weights name, missing file, hash
            mismatch, or a file that does not fit.

    Example:
        >>> model = VGGFace(include_top=True, classes=7)
        >>> model.get_layer("fc6").output.shape
        (None, 4096)
    """
    input_shape = validate_builder_args(
        "VGGFace", include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        default_shape=(224, 224, 3), min_size=32,
        classifier_activation=classifier_activation, name=name,
    )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"VGGFace: dropout must be in [0, 1); received dropout={dropout!r}")
    if include_top:
        check_fixed_shape("VGGFace", input_shape)

    inputs, x = build_input(input_tensor, input_shape)
    for block, (width, convs) in enumerate(BLOCKS, start=1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(width, 3, padding="same", activation="relu",
                              name=f"conv{block}_{i}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)

    if include_top:
        x = layers.Flatten(name="flatten")(x)
        for fc in ("fc6", "fc7"):
            x = layers.Dense(4096, name=fc)(x)
            x = layers.Activation("relu", name=f"{fc}_relu")(x)
            x = layers.Dropout(dropout, name=f"{fc}_dropout")(x)
        x = layers.Dense(classes, name="fc8")(x)
        # float32 output keeps softmax stable under a mixed-precision policy.
        x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="pool")(x)

    model = keras.Model(inputs, x, name=name)
    load_builder_weights(model, weights, architecture="VGGFace", head=("fc8",))
    return model


def preprocess_input(images):
    """Prepare RGB (or gray) faces, 0..255, for the VGG-Face weights.

    Converts to BGR and subtracts the VGG-Face channel means
    (93.5940, 104.7624, 129.1863), exactly as the ``"vggface"`` registry entry
    says (:meth:`kemo.weights.WeightsInfo.preprocess`).

    Args:
        images: ``(..., H, W, 3)`` RGB or ``(..., H, W, 1)`` gray pixel values.

    Returns:
        A float32 array ``(..., H, W, 3)``.
    """
    from kemo import weights as registry

    return registry.get("vggface").preprocess(images)
