import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.errors import (DataError, check_choice, check_count, collect_problems,
                            handle_problems, raise_collected_problems)


def test_check_count_accepts_integers_and_refuses_the_rest():
    assert check_count("n", 3) == 3 and type(check_count("n", np.int64(3))) is int
    assert check_count("n", 0, minimum=0) == 0
    for bad in (0, -2, 2.5, 3.0, True, "3", None):
        with pytest.raises(ValueError, match=f"n must be an integer >= 1, got {bad!r}"):
            check_count("n", bad)


def test_check_choice_names_the_allowed_values():
    check_choice("mode", "a", ("a", None))
    check_choice("mode", None, ("a", None))
    with pytest.raises(ValueError, match=r"mode='b' is not allowed; use one of 'a', None\."):
        check_choice("mode", "b", ("a", None))


@pytest.mark.parametrize("build", [
    lambda: mmtl_tf.data.make_image_text_dataset("default", "validation", image_size=(8, 8),
                                                 batch_size=0),
    lambda: mmtl_tf.data.make_image_classification_dataset("default", "validation",
                                                           image_size=(8, 8), batch_size=0),
    lambda: mmtl_tf.data.make_audio_text_dataset("default", "validation", batch_size=0),
    lambda: mmtl_tf.data.make_text_classification_dataset("default", split="validation",
                                                          batch_size=0),
])
def test_dataset_builders_refuse_batch_size_0_before_reading(build):
    # TensorFlow's own error came after every file was decoded, and read
    # "{{function_node __wrapped__BatchDatasetV2...}} Batch size must be greater than zero".
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        build()


def test_classifier_builders_refuse_fractional_class_counts():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 2.5"):
        mmtl_tf.models.build_fusion_classifier(image_shape=(8, 8, 3), vocab_size=10,
                                               sequence_length=4, num_classes=2.5)
    model = mmtl_tf.models.build_fusion_classifier(image_shape=(8, 8, 3), vocab_size=10,
                                                   sequence_length=4)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        mmtl_tf.training.compile_classifier(model, num_classes=0)

ROWS = [("a.csv:2", "empty caption"), ("a.csv:3", "no label")]
FILES = [("a.csv:4 (x.png)", "file not found")]


def test_without_collecting_the_first_problems_raise_at_once():
    with pytest.raises(DataError, match="^1 bad row:\n  a.csv:2: empty caption\nFix") as e:
        handle_problems(ROWS[:1], "raise", "rows")
    assert e.value.problems == ROWS[:1]
    raise_collected_problems()  # nothing is being collected: no-op


def test_collected_problems_of_several_calls_raise_once_at_the_end():
    reached = []
    with pytest.raises(DataError) as e:
        with collect_problems():
            handle_problems(ROWS, "raise", "rows", total=10)
            handle_problems(ROWS, "raise", "rows", total=10)  # the split read again
            handle_problems(FILES, "raise", "image files", total=10)
            handle_problems([], "raise", "rows")
            reached.append(True)  # the code carries on as with "skip"
    assert reached == [True]
    assert str(e.value) == ("2 bad rows:\n  a.csv:2: empty caption\n  a.csv:3: no label\n"
                            "1 bad image file:\n  a.csv:4 (x.png): file not found\n"
                            "Fix or remove them, or pass on_error='skip' to skip them.")
    assert e.value.problems == ROWS + FILES


def test_a_checkpoint_raises_what_was_collected_and_skip_still_warns():
    with pytest.raises(DataError, match="1 bad image file") as e:
        with collect_problems():
            with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad rows"):
                handle_problems(ROWS, "skip", "rows")  # skip is not collected
            raise_collected_problems()  # nothing yet
            handle_problems(FILES, "raise", "image files")
            raise_collected_problems()
            pytest.fail("the checkpoint did not raise")
    assert e.value.problems == FILES and "rows" not in str(e.value)


def test_all_items_bad_raises_at_once_with_the_earlier_problems():
    with pytest.raises(DataError) as e:
        with collect_problems():
            handle_problems(ROWS, "raise", "rows", total=5)
            handle_problems(FILES, "raise", "image files", total=1)
            pytest.fail("carried on without any file")
    assert e.value.problems == ROWS + FILES and str(e.value).count("Fix or remove") == 1


def test_other_errors_in_the_block_come_with_the_collected_problems():
    with pytest.raises(DataError) as e:
        with collect_problems():
            handle_problems(ROWS, "raise", "rows")
            raise DataError("b.csv: no 'caption' column", [("b.csv", "no 'caption' column")])
    assert "2 bad rows" in str(e.value) and "b.csv: no 'caption' column" in str(e.value)
    assert e.value.problems == ROWS + [("b.csv", "no 'caption' column")]
    with pytest.raises(DataError) as e:
        with collect_problems():
            handle_problems(ROWS, "raise", "rows")
            {}["missing"]  # e.g. a consequence of the left-out rows
    assert e.value.problems == ROWS and isinstance(e.value.__cause__, KeyError)
    with pytest.raises(KeyError):  # nothing collected: the error as it is
        with collect_problems():
            {}["missing"]
    with pytest.raises(DataError, match="^only this$"):
        with collect_problems():
            raise DataError("only this")


def test_nested_blocks_report_at_the_outer_end():
    with pytest.raises(DataError) as e:
        with collect_problems():
            with collect_problems():
                handle_problems(ROWS, "raise", "rows")
            handle_problems(FILES, "raise", "image files")
    assert e.value.problems == ROWS + FILES
