"""The project's real data: scikit-learn's bundled digits set (8x8 images, 10 classes).

One fixed split is used everywhere (training, the .tflite fixtures, the benches and the
end-to-end run), so results are comparable between tools: 360 test images, stratified,
``random_state=0``. Pixels are 0..16 in the data set and scaled to [0, 1] here.
"""

import numpy as np

TEST_SIZE = 360
SPLIT_SEED = 0


def digits_split():
    """Return ``(x_train, x_test, y_train, y_test)``; x as float32 in [0, 1], shape (n, 64)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
