"""Several ResNet-10 face models as one Keras model: their mean prediction, one weights file.

An ensemble of face models trained apart (another width, stem or seed) errs less than any
one of them. Built as one model, it is used wherever a face model is (``kemo predict``,
:class:`kemo.FaceEmotionClassifier`, the recogniser's ``fc1`` features) and ships as one
``.weights.h5`` file with one sha256.

Feature taps (layer names):
    ``fc1`` (512 x members: each member's ``fc1``, side by side), ``predictions`` (the
    members' mean output).
"""

import keras
from keras import layers

from kemo.models import resnet10
from kemo.models._common import build_input, load_builder_weights, validate_builder_args
from kemo.models.resnet10 import ResNet10


def FaceEnsemble(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=7,
    classifier_activation="softmax",
    name="face_ensemble",
    members=None,
):
    """Build an ensemble of ResNet-10 face models that averages their outputs.

    Args:
        include_top: Keep each member's classifier; the model's ``predictions`` are the
            members' mean output and ``fc1`` their ``fc1`` features side by side. Without
            it, ``pooling`` must be ``"avg"`` or ``"max"``: the output is the members'
            pooled features side by side (their feature maps differ in size).
        weights: ``None`` (random init), a registered ensemble entry or the path of a
            ``.weights.h5`` file that :func:`kemo.training.export_weights` wrote for an
            ensemble.
        input_tensor: Optional Keras tensor to use as the image input.
        input_shape: ``(H, W, C)``; defaults to the registered weights' input shape, else
            ``(48, 48, 1)``.
        pooling: With ``include_top=False``: ``"avg"`` or ``"max"``.
        classes: Number of output classes.
        classifier_activation: Activation of each member's ``predictions`` (averaged
            after it); ``None`` averages logits.
        name: Model name.
        members: One dict of :func:`kemo.models.ResNet10` options per member, e.g.
            ``[{}, {"width": 0.5, "stem": "full"}]`` (the shipped shape, then a narrow
            full-stem one). ``None``: the weights' own members. :func:`from_members`
            builds one from trained members.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: On an invalid argument, or ``members`` that differ from the weights'.

    Example:
        >>> model = FaceEnsemble(members=[{}, {"width": 0.5}], input_shape=(48, 48, 1))
        >>> model.get_layer("fc1").output.shape
        (None, 1024)
    """
    input_shape = validate_builder_args(
        "FaceEnsemble", include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        default_shape=(48, 48, 1), min_size=32,
        classifier_activation=classifier_activation, name=name,
    )
    members = _members(weights, members)
    if not include_top and pooling is None:
        raise ValueError("FaceEnsemble: include_top=False needs pooling='avg' or 'max' (the "
                         "members' feature maps differ in size); received pooling=None")

    inputs, x = build_input(input_tensor, input_shape)
    features = []
    for i, options in enumerate(members):
        net = ResNet10(include_top=include_top, input_shape=input_shape, pooling=pooling,
                       classes=classes, name=f"member{i}", **options)
        if include_top:  # the member up to its fc1; the heads follow as one layer
            net = keras.Model(net.inputs, net.get_layer("fc1").output, name=f"member{i}")
        features.append(net(x))
    if not include_top:
        x = layers.Concatenate(name="pool")(features)
    else:
        x = layers.Concatenate(name="fc1")(features)
        x = layers.Dropout(0.5, name="fc1_dropout")(x)
        # Every member's classifier in one Dense (block-diagonal as built by
        # `from_members`), so that fc1 lies on the path to the output.
        x = layers.Dense(classes * len(members), dtype="float32", name="member_logits")(x)
        x = layers.Reshape((len(members), classes), dtype="float32", name="member_outputs")(x)
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, dtype="float32",
                                  name="member_predictions")(x)
        x = layers.GlobalAveragePooling1D(dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    load_builder_weights(model, weights, architecture="FaceEnsemble")
    return model


def from_members(weights, *, input_shape=(48, 48, 1), name="face_ensemble"):
    """An ensemble of trained ResNet-10 face models, each given by its weights.

    Args:
        weights: Two or more registered names or ``.weights.h5`` files of ResNet-10 face
            models (each builds its own shape, see :func:`kemo.weights.builder_options`).
        input_shape: The members' input shape.
        name: Model name.

    Returns:
        A :func:`FaceEnsemble` model whose members hold those weights; export it with
        :func:`kemo.training.export_weights` to use it as one file.
    """
    import numpy as np

    from kemo.weights import builder_options

    weights = list(weights)
    members = [builder_options(w, "ResNet10") for w in weights]
    sources = [ResNet10(weights=w, input_shape=input_shape) for w in weights]
    classes = sources[0].output_shape[-1]
    model = FaceEnsemble(members=members, input_shape=input_shape, classes=classes, name=name)
    kernel = np.zeros(model.get_layer("member_logits").kernel.shape, np.float32)
    bias = np.zeros(kernel.shape[1], np.float32)
    for i, source in enumerate(sources):
        for layer in model.get_layer(f"member{i}").layers:
            if layer.weights:
                layer.set_weights(source.get_layer(layer.name).get_weights())
        top_kernel, top_bias = source.get_layer("predictions").get_weights()
        rows, cols = slice(512 * i, 512 * (i + 1)), slice(classes * i, classes * (i + 1))
        kernel[rows, cols], bias[cols] = top_kernel, top_bias
    model.get_layer("member_logits").set_weights([kernel, bias])
    return model


def shape_options(model):
    """The builder options that rebuild a face model's shape.

    An ensemble's members, or a ResNet-10's width and stem
    (:func:`kemo.models.resnet10.shape_options`).
    """
    names = [layer.name for layer in model.layers]
    count = sum(1 for n in names if n.startswith("member") and n[6:].isdigit())
    if not count:
        return resnet10.shape_options(model)
    return {"members": [resnet10.shape_options(model.get_layer(f"member{i}"))
                        for i in range(count)]}


def _members(weights, members):
    """The members' options: as given, checked against the weights', or the weights' own."""
    stored = None
    if weights is not None:
        from kemo.weights import builder_options

        stored = builder_options(weights, "FaceEnsemble").get("members")
        if stored is None:
            raise ValueError(f"FaceEnsemble: weights {weights!r} do not say their members "
                             "(export them with kemo.training.export_weights)")
    if members is None:
        if stored is None:
            raise ValueError("FaceEnsemble: give members (one dict of ResNet10 options per "
                             "member) or weights that hold them")
        return [dict(m) for m in stored]
    if (not isinstance(members, (list, tuple)) or len(members) < 2
            or not all(isinstance(m, dict) for m in members)):
        raise ValueError("FaceEnsemble: members must be a list of at least 2 dicts of "
                         f"ResNet10 options; received members={members!r}")
    if stored is not None and [dict(m) for m in members] != [dict(m) for m in stored]:
        raise ValueError(f"FaceEnsemble: weights {weights!r} hold members {stored!r}; "
                         f"received members={members!r} (leave members unset to use theirs)")
    return [dict(m) for m in members]
