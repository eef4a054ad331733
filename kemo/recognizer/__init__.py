"""The end-to-end video emotion recogniser: videos in, emotions out.

:class:`VideoEmotionRecognizer` chains the whole pipeline of the paper behind one scikit-learn
classifier::

    video -> faces (FacePreprocessor) -> frame features -> Aggregator -> linear SVM
                                      -> C3D clip features -> linear SVM  (optional)
                                      -> feature sequences -> BiResidualLSTM  (optional)
                                                               -> weighted fusion of probabilities

Two modes:

* pretrained (never fitted): kemo's shipped FER2013 face model scores every face, and a video's
  probabilities pool its frame probabilities (``pooling``; see :mod:`kemo.timeline`). It works
  offline with no training.
* trained (after :meth:`VideoEmotionRecognizer.fit`): the paper's aggregated-feature SVM, plus
  the C3D and LSTM branches and their fusion when configured.

A trained recogniser is saved as a folder of plain files (JSON, ``.npz`` arrays, Keras
``.weights.h5``), each checked by sha256 when loaded; nothing is unpickled, so loading a model
folder cannot run code. See :meth:`VideoEmotionRecognizer.save`.

The package's modules, by what they hold: :mod:`~kemo.recognizer.recognizer` the recogniser,
:mod:`~kemo.recognizer.results` what it reports, :mod:`~kemo.recognizer.persistence` its model
folder, :mod:`~kemo.recognizer.checks` its parameter checks, :mod:`~kemo.recognizer.networks`
the shared networks, :mod:`~kemo.recognizer.videos` the batch of input videos and
:mod:`~kemo.recognizer.finetune` the fine-tuning of the face model. Every name below was
importable from ``kemo.recognizer`` when it was one module, and still is.
"""

from kemo.recognizer.checks import (
    C3D_DEFAULTS,
    ERROR_MODES,
    FINETUNE_DEFAULTS,
    FUSION_WEIGHTS,
    LSTM_DEFAULTS,
    PAPER_WEIGHTS,
    SCORES_DEFAULTS,
    _branch_config,
    _check_positive,
    _check_weights_name,
    _names_of,
    calibration_shortfall,
)
from kemo.recognizer.networks import (
    _TAPS,
    _batched,
    _face_classifier,
    _file_stamp,
    _frame_extractor,
    _is_face_classifier,
    _shared,
    _unit_range,
)
from kemo.recognizer.persistence import (
    C3D_FILE,
    FINETUNED_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    _c3d_random,
    _checksum,
    _LinearModel,
    _params_from_json,
    _params_to_json,
    _plain,
    _renamed_weights,
    _sha256,
    check_model_folder,
    check_save_folder,
)
from kemo.recognizer.recognizer import VideoEmotionRecognizer, _aligned
from kemo.recognizer.results import TrackResult, VideoAnalysis, VideoFailure
from kemo.recognizer.videos import _SKIPPABLE, _check_video_list, _name_of, _video_fps

__all__ = ["TrackResult", "VideoAnalysis", "VideoEmotionRecognizer", "VideoFailure"]
