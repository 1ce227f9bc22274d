"""Train the intent head: logistic regression over MiniLM sentence embeddings, exported to ONNX.

Offline build tool (needs scikit-learn, onnx, onnxruntime, numpy):

    python models/intent/train_intent.py

Texts in intents.jsonl are embedded with the same int8 MiniLM and the same pure-Python
tokenizer the app uses at run time, so training and inference see identical vectors. The
classifier is written as a plain ONNX graph (MatMul, Add, Softmax, ArgMax) rather than
skl2onnx's ai.onnx.ml operators, because that op set is guaranteed in onnxruntime-web's wasm
build. Outputs: `probabilities` float32 [N, labels] and `label` int64 [N].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "app"))

from wasmagent.text.tokenizer import WordPieceTokenizer  # noqa: E402

LABELS = ["question", "tool", "smalltalk", "out_of_scope"]
SEED = 13


def embed(texts: list[str]) -> np.ndarray:
    tok = WordPieceTokenizer.from_vocab_text(
        (ROOT / "models/all-minilm-l6-v2/vocab.txt").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(ROOT / "models/all-minilm-l6-v2/model.int8.onnx"),
                                   providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:  # one at a time, as questions are embedded at run time
        ids = np.array([tok.encode(text)], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}
        rows.append(session.run(None, feeds)[0][0])
    return np.stack(rows).astype(np.float32)


def to_onnx(clf: LogisticRegression, dim: int) -> onnx.ModelProto:
    weights = numpy_helper.from_array(clf.coef_.T.astype(np.float32), "W")
    bias = numpy_helper.from_array(clf.intercept_.astype(np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["embedding", "W"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=-1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "intent_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["batch", len(LABELS)]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="wasmagent-train-intent")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "intents.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    y = np.array([LABELS.index(r["label"]) for r in rows])
    x = embed(texts)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=SEED)
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=SEED)
    clf.fit(x_train, y_train)
    accuracy = float((clf.predict(x_test) == y_test).mean())
    print(f"held-out accuracy: {accuracy:.3f} on {len(y_test)} examples "
          f"(trained on {len(y_train)})")
    print(classification_report(y_test, clf.predict(x_test), target_names=LABELS, digits=3))
    final = LogisticRegression(C=4.0, max_iter=2000, random_state=SEED).fit(x, y)
    model = to_onnx(final, x.shape[1])
    onnx.save(model, str(HERE / "intent.onnx"))
    (HERE / "labels.json").write_text(json.dumps(LABELS) + "\n")
    check = ort.InferenceSession(str(HERE / "intent.onnx"), providers=["CPUExecutionProvider"])
    probs, labels = check.run(None, {"embedding": x[:4]})
    assert np.allclose(probs, final.predict_proba(x[:4]), atol=1e-5)
    assert (labels == final.predict(x[:4])).all()
    print(f"wrote intent.onnx ({(HERE / 'intent.onnx').stat().st_size} bytes), labels {LABELS}")


if __name__ == "__main__":
    main()
