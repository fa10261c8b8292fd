"""Attention of the exported transparent decoder as ONNX Runtime's fused `MultiHeadAttention`.

The standard export spells `scaled_dot_product_attention` out as MatMul → Softmax → MatMul, so
ONNX Runtime materialises every score: 32 heads × 4096² fp32 = 2 GiB per attention layer at
1024², written, soft-maxed and read back. Its `com.microsoft.MultiHeadAttention` CPU kernel
runs flash attention instead (tiles that fit the L2 cache, fp32 throughout): measured 0.49 s vs
0.59 s per 4096-token layer and 0.3 GB instead of 2.5 GB of memory. The decoder's attention has
no mask, no dropout and the default scale, which is all this translation accepts; anything else
fails the export, and that size then decodes eagerly.
"""

from __future__ import annotations

from typing import Any


def _multi_head_attention() -> Any:
    """The `com.microsoft.MultiHeadAttention` op for onnxscript's tracer (onnx has no schema
    of Microsoft's ops, so this gives the parts of it the translation uses)."""
    import onnxscript
    from onnx.defs import OpSchema
    from onnxscript._internal.values import Op

    schema = OpSchema(
        "MultiHeadAttention",
        "com.microsoft",
        1,
        inputs=[OpSchema.FormalParameter(name, "T") for name in ("query", "key", "value")],
        outputs=[OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)"], "")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "", required=True)],
    )
    return Op(onnxscript.values.Opset("com.microsoft", 1), "MultiHeadAttention", schema)


def translation_table() -> dict[Any, Any]:
    """`torch.onnx.export(custom_translation_table=...)` entries: SDPA → MultiHeadAttention."""
    import torch
    from onnxscript.onnx_opset import opset18

    op: Any = opset18  # its typed signatures do not know traced values
    attention = _multi_head_attention()

    def scaled_dot_product_attention(
        query: Any,
        key: Any,
        value: Any,
        attn_mask: Any = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> Any:
        if attn_mask is not None or dropout_p or is_causal or scale is not None or enable_gqa:
            raise ValueError("only plain attention (no mask, dropout or scale) is translated")
        batch, heads, length, head_size = query.shape  # static: one graph per size
        if key.shape != query.shape or value.shape != query.shape:
            raise ValueError("only self-attention of one shape is translated")

        def flat(x: Any) -> Any:  # [B,N,S,H] → [B,S,N·H], the kernel's layout
            shape = op.Constant(value_ints=[batch, length, heads * head_size])
            return op.Reshape(op.Transpose(x, perm=[0, 2, 1, 3]), shape)

        # The kernel's default scale is 1/√head_size, as scaled_dot_product_attention's.
        out = attention(flat(query), flat(key), flat(value), num_heads=heads)
        shape = op.Constant(value_ints=[batch, length, heads, head_size])
        return op.Transpose(op.Reshape(out, shape), perm=[0, 2, 1, 3])

    return {torch.ops.aten.scaled_dot_product_attention.default: scaled_dot_product_attention}
