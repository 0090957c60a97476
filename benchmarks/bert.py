"""A BERT-style encoder as a PyTorch/Hugging Face exporter writes it (opset 13 style).

Inputs ``input_ids`` and ``attention_mask`` are int64 ``[batch, seq_len]``; the
output ``y`` is the last hidden state ``[batch, seq_len, hidden]``. Embeddings are
``Gather``s (word, position, token type), the mask becomes ``(1 - mask) * -10000``
added to the attention scores, LayerNorm is written as ReduceMean/Sub/Pow/Sqrt/Div
and GELU with Erf, as exporters did before ``LayerNormalization`` existed. Weights
are seeded random (nothing is downloaded).

    python -m benchmarks.bert -o bert.onnx --layers 2
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks.models import IR_VERSION, GraphBuilder


def _layer_norm(b: GraphBuilder, x: str, hidden: int, name: str, axis: int = -1) -> str:
    """(x - mean) / sqrt(var + eps) * scale + bias, written out as the exporters did (means over ``axis``,
    scale and bias over the last axis)."""
    mean = b.op("ReduceMean", [x], name=f"{name}.mean", axes=[axis])
    centered = b.op("Sub", [x, mean], name=f"{name}.sub")
    square = b.op("Pow", [centered, b.constant(f"{name}.two", np.float32(2.0))], name=f"{name}.pow")
    var = b.op("ReduceMean", [square], name=f"{name}.var", axes=[axis])
    std = b.op("Sqrt", [b.op("Add", [var, b.constant(f"{name}.eps", np.float32(1e-12))], name=f"{name}.add_eps")],
               name=f"{name}.sqrt")
    normed = b.op("Div", [centered, std], name=f"{name}.div")
    scaled = b.op("Mul", [normed, b.uniform(f"{name}.scale", (hidden,), 0.8, 1.2)], name=f"{name}.mul")
    return b.op("Add", [scaled, b.weight(f"{name}.bias", (hidden,), 0.02)], name=f"{name}.add")


def _gelu(b: GraphBuilder, x: str, name: str) -> str:
    erf = b.op("Erf", [b.op("Div", [x, b.constant(f"{name}.sqrt2", np.float32(math.sqrt(2.0)))],
                            name=f"{name}.div")], name=f"{name}.erf")
    h = b.op("Mul", [x, b.op("Add", [erf, b.constant(f"{name}.one", np.float32(1.0))], name=f"{name}.add")],
             name=f"{name}.mul")
    return b.op("Mul", [h, b.constant(f"{name}.half", np.float32(0.5))], name=f"{name}.mul_half")


def _attention(b: GraphBuilder, x: str, mask_bias: str, batch: int, seq_len: int, hidden: int, heads: int,
               name: str) -> str:
    d_head = hidden // heads
    split = b.constant(f"{name}.split_shape", np.array([batch, seq_len, heads, d_head], np.int64))
    merged = b.constant(f"{name}.merged_shape", np.array([batch, seq_len, hidden], np.int64))

    def heads_of(which: str, perm: list[int]) -> str:
        projected = b.linear(x, hidden, hidden, f"{name}.{which}")
        return b.op("Transpose", [b.op("Reshape", [projected, split], name=f"{name}.{which}.reshape")],
                    name=f"{name}.{which}.transpose", perm=perm)

    q, k_t, v = heads_of("query", [0, 2, 1, 3]), heads_of("key", [0, 2, 3, 1]), heads_of("value", [0, 2, 1, 3])
    scores = b.op("Div", [b.op("MatMul", [q, k_t], name=f"{name}.qk"),
                          b.constant(f"{name}.sqrt_dh", np.float32(math.sqrt(d_head)))], name=f"{name}.scale")
    probs = b.op("Softmax", [b.op("Add", [scores, mask_bias], name=f"{name}.mask")], name=f"{name}.softmax",
                 axis=-1)
    context = b.op("Transpose", [b.op("MatMul", [probs, v], name=f"{name}.context")], name=f"{name}.merge",
                   perm=[0, 2, 1, 3])
    return b.linear(b.op("Reshape", [context, merged], name=f"{name}.merge.reshape"), hidden, hidden,
                    f"{name}.output")


def _mask_bias(b: GraphBuilder) -> str:
    """attention_mask [b, s] (1 = attend) -> an additive bias [b, 1, 1, s] of 0 or -10000."""
    mask = b.op("Unsqueeze", ["attention_mask", b.constant("mask.axes", np.array([1, 2], np.int64))],
                name="mask.unsqueeze")
    mask = b.op("Cast", [mask], name="mask.cast", to=TensorProto.FLOAT)
    inverted = b.op("Sub", [b.constant("mask.one", np.float32(1.0)), mask], name="mask.invert")
    return b.op("Mul", [inverted, b.constant("mask.min", np.float32(-10000.0))], name="mask.bias")


def bert_model(batch=1, seq_len=128, hidden=768, heads=12, layers=2, intermediate=3072, vocab=30522,
               max_positions=512, seed=0) -> onnx.ModelProto:
    """A BERT-base-sized encoder of ``layers`` layers (BERT-base has 12)."""
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    b = GraphBuilder(seed)
    words = b.op("Gather", [b.weight("embeddings.word", (vocab, hidden), 0.02), "input_ids"], name="emb.word")
    positions = b.constant("embeddings.position_ids", np.arange(seq_len, dtype=np.int64)[None, :])
    pos = b.op("Gather", [b.weight("embeddings.position", (max_positions, hidden), 0.02), positions],
               name="emb.position")
    token_types = b.constant("embeddings.token_type_ids", np.zeros((batch, seq_len), np.int64))
    types = b.op("Gather", [b.weight("embeddings.token_type", (2, hidden), 0.02), token_types], name="emb.type")
    x = _layer_norm(b, b.op("Add", [b.op("Add", [words, pos], name="emb.add"), types], name="emb.add_type"),
                    hidden, "emb.ln")
    mask_bias = _mask_bias(b)
    for layer in range(layers):
        name = f"layer{layer}"
        attention = _attention(b, x, mask_bias, batch, seq_len, hidden, heads, f"{name}.attention")
        x = _layer_norm(b, b.op("Add", [attention, x], name=f"{name}.attention.residual"), hidden,
                        f"{name}.attention.ln")
        ffn = b.linear(_gelu(b, b.linear(x, hidden, intermediate, f"{name}.intermediate"), f"{name}.gelu"),
                       intermediate, hidden, f"{name}.output")
        x = _layer_norm(b, b.op("Add", [ffn, x], name=f"{name}.output.residual"), hidden, f"{name}.output.ln")
    b.rename(x, "y")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, [batch, seq_len])
           for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(b.nodes, "bert_encoder", ids,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq_len, hidden])],
                              initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="benchmarks.bert")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bert", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="output .onnx path")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args(argv)
    onnx.save(bert_model(layers=args.layers, seq_len=args.seq_len), args.output)
    print(f"{args.output}: BERT-style encoder, {args.layers} layers, sequence {args.seq_len}")


if __name__ == "__main__":
    main()
