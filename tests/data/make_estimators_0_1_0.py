"""Write tests/data/estimators-0.1.0.pkl with sklearn-clip 0.1.0.

Run with the 0.1.0 tree first on ``PYTHONPATH``:
``python tests/data/make_estimators_0_1_0.py tests/data/estimators-0.1.0.pkl``.
"""

import pickle
import sys
import tempfile

import sklearn_clip
from sklearn_clip import CLIPEmbeddingTransformer, CLIPZeroShotClassifier
from sklearn_clip.datasets import make_shapes
from sklearn_clip.toy import make_tiny_clip


def main():
    path = make_tiny_clip(tempfile.mkdtemp())
    data = make_shapes(6, image_size=30, random_state=0)
    common = {"device": "cpu", "dtype": "float32", "store_weights_in_pickle": True}
    clf = CLIPZeroShotClassifier(path, templates="{}", **common).fit(
        None, ["red", "green", "blue"]
    )
    emb = CLIPEmbeddingTransformer(path, **common).fit(data.images)
    out = {
        "version": sklearn_clip.__version__,
        "images": data.images,
        "zero_shot": pickle.dumps(clf),
        "zero_shot_proba": clf.predict_proba(data.images),
        "embedding": pickle.dumps(emb),
        "embedding_out": emb.transform(data.images),
    }
    with open(sys.argv[1], "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main()
