"""Write the browser's MiniLM: `model.int8.onnx` with onnxruntime's graph optimisations applied
offline, so onnxruntime-web loads it with optimisation disabled.

Measured in Chromium (onnxruntime-web 1.30, 2-core box under load): creating the session from
`model.int8.onnx` with `graphOptimizationLevel: "all"` took 470-620 ms; from this file with
`"disabled"` 110-310 ms, with the same output vector (the fusions, e.g. DynamicQuantizeMatMul
and MatMulIntegerToFloat, compute the same integers). "extended", not "all": level-3 layout
transforms are specific to the CPU that ran them; the extended fusions are onnxruntime contrib
ops that its wasm build has too.

    .venv/bin/python models/optimize_minilm.py [SRC] [DST]

Run by wasm_pkg/build.py when its input changes, which serves the result as dist/'s
`models/all-minilm-l6-v2/model.int8.onnx`; the output depends only on the input and the pinned
onnxruntime (requirements-dev.txt), byte for byte. The native host keeps loading
`model.int8.onnx` (or `model.uint8.onnx`) and optimises at load time.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "all-minilm-l6-v2"


def optimize(src: Path, dst: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:3]]
    optimize(args[0] if args else HERE / "model.int8.onnx",
             args[1] if len(args) > 1 else HERE / "model.int8.opt.onnx")
