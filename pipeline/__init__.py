"""Data in: the source reader, the record format, the tf.data builder and the augmentations."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides our own messages; users can override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
