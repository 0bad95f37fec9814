"""The cross-entropies of `compile_classifier` and `compile_for_task`, which
say what label format they expect when given another one.

Keras' own losses fail on labels of the wrong format deep inside the graph
("Argument `output` must have rank (ndim) `target.ndim - 1`", "`target` and
`output` must have the same rank"). These subclasses compare the static ranks
and widths of labels and probabilities once, when the loss is traced (no
op is added, so the graph and XLA are unchanged), and raise a `ValueError`
naming the expected format; otherwise they compute exactly Keras' loss.
"""

import keras


def _shape(tensor):
    shape = getattr(tensor, "shape", None)
    return None if shape is None or shape.rank is None else tuple(shape)


# Keras keeps a train step whose first trace failed, and fails on it again
# ("Creating variables on a non-first call to a function decorated with
# tf.function") even with the right labels; `mmtl_tf.training.fit` drops it.
RETRACE = (" (After this error, compile the model again before your next "
           "model.fit: Keras keeps the train step that failed to build.)")


def _one_per_row(labels, probs):
    """Whether labels of shape `labels` hold one value per row of `probs`:
    (B,) or (B, 1) for (B, K)."""
    return len(labels) == len(probs) - 1 or (len(labels) == len(probs)
                                             and labels[-1] in (1, None))


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ClassIdCrossentropy(keras.losses.SparseCategoricalCrossentropy):
    """`keras.losses.SparseCategoricalCrossentropy` for softmax outputs
    (B, num_classes) and int class ids of shape (B,) or (B, 1); other labels
    (one-hot (B, num_classes), for one) raise a `ValueError` saying so."""

    def call(self, y_true, y_pred):
        labels, probs = _shape(y_true), _shape(y_pred)
        if labels is not None and probs is not None and not _one_per_row(labels, probs):
            classes = probs[-1]
            hint = (" They look one-hot: pass np.argmax(labels, axis=-1)."
                    if len(labels) == len(probs) and labels[-1] == classes else "")
            raise ValueError(
                f"labels of shape {labels} do not fit probabilities of shape {probs}: "
                f"a softmax classifier over {classes} classes takes int class ids of "
                f"shape (N,) or (N, 1).{hint}{RETRACE}")
        return super().call(y_true, y_pred)


@keras.saving.register_keras_serializable(package="mmtl_tf")
class MultiHotCrossentropy(keras.losses.BinaryCrossentropy):
    """`keras.losses.BinaryCrossentropy` for sigmoid outputs: with one output,
    labels 0/1 of shape (B,) or (B, 1); with several (multilabel), multi-hot
    labels of shape (B, num_classes). Other labels (int class ids for a
    multilabel model, for one) raise a `ValueError` saying so."""

    def call(self, y_true, y_pred):
        labels, probs = _shape(y_true), _shape(y_pred)
        if labels is not None and probs is not None and probs and probs[-1] is not None:
            width = probs[-1]
            if width == 1:
                fits = _one_per_row(labels, probs)
                wanted = "0/1 labels of shape (N,) or (N, 1)"
            else:
                fits = len(labels) == len(probs) and labels[-1] in (width, None)
                wanted = (f"multi-hot labels of shape (N, {width}) (1.0 for every class "
                          "present), not int class ids")
            if not fits:
                raise ValueError(
                    f"labels of shape {labels} do not fit probabilities of shape {probs}: "
                    f"a sigmoid classifier with {width} output(s) takes {wanted}.{RETRACE}")
        return super().call(y_true, y_pred)
