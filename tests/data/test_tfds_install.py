"""The installed TFDS can reach every dataset our `tfds` loaders name.

Nothing is downloaded here (no internet): these check the install. With
tensorflow-datasets 4.9.10 and etils 1.15, every `tfds.load` that downloads
failed with "No module named 'importlib_resources'" (TFDS imports it, etils no
longer brings it), and preparing speech_commands needs pydub; setup.cfg pins
both.
"""

import warnings

import numpy as np
import pytest
import soundfile as sf

from mmtl_tf.data.image_classification import TFDS_IMAGE_DATASETS
from mmtl_tf.data.text_classification import TFDS_TEXT_DATASETS

tfds = pytest.importorskip("tensorflow_datasets")

NAMES = sorted([*TFDS_TEXT_DATASETS, *TFDS_IMAGE_DATASETS, "coco_captions", "speech_commands"])


@pytest.mark.parametrize("name", NAMES)
def test_tfds_builder_knows_where_to_download(name):
    # The download step's first look-up (the builder's registered URLs and
    # checksums); it raised ModuleNotFoundError before the pin.
    urls = tfds.builder(name).url_infos
    assert urls and all(str(url).startswith(("http://", "https://")) for url in urls)


def test_speech_commands_preparation_reads_wav_with_pydub(tmp_path):
    # TFDS' speech_commands builder decodes each clip with pydub.
    samples = (np.sin(np.arange(1600) / 5.0) * 12000).astype(np.int16)
    path = str(tmp_path / "clip.wav")
    sf.write(path, samples, 16000, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pydub: "Couldn't find ffmpeg"
        segment = tfds.core.lazy_imports.pydub.AudioSegment.from_file(path, format="wav")
    assert segment.frame_rate == 16000
    np.testing.assert_array_equal(np.array(segment.get_array_of_samples()), samples)
