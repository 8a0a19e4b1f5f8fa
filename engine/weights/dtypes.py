"""The one table of tensor element types: our names, their sizes, and how each file format spells them.

numpy has no bfloat16, so bf16 tensors are viewed as their uint16 bits and
widened by a shift (``bf16_bits_to_float32``); everything else maps to numpy.
"""

from __future__ import annotations

import numpy as np

# name -> (itemsize, numpy dtype used to view the stored bytes)
_TYPES = {
    "float32": (4, np.float32), "float16": (2, np.float16), "bfloat16": (2, np.uint16),
    "float64": (8, np.float64), "int8": (1, np.int8), "uint8": (1, np.uint8), "int16": (2, np.int16),
    "uint16": (2, np.uint16), "int32": (4, np.int32), "uint32": (4, np.uint32), "int64": (8, np.int64),
    "uint64": (8, np.uint64), "bool": (1, np.bool_),
}
# What a weight matrix may be stored in.
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# MindSpore checkpoint ``tensor_type`` strings and safetensors ``dtype`` strings.
CKPT_NAMES = {"Float32": "float32", "Float16": "float16", "BFloat16": "bfloat16", "Float64": "float64",
              "Int8": "int8", "UInt8": "uint8", "Int16": "int16", "UInt16": "uint16", "Int32": "int32",
              "UInt32": "uint32", "Int64": "int64", "UInt64": "uint64", "Bool": "bool"}
SAFETENSORS_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I8": "int8",
                     "U8": "uint8", "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32",
                     "I64": "int64", "U64": "uint64", "BOOL": "bool"}
SAFETENSORS_FROM_NUMPY = {"float32": "F32", "float16": "F16", "int8": "I8", "uint16": "U16", "int32": "I32"}
# Spellings a MindFormers yaml may use for compute_dtype / param_init_type.
YAML_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "mstype.float32": "float32",
                "mstype.float16": "float16", "mstype.bfloat16": "bfloat16"}


def itemsize(dtype: str) -> int:
    return _TYPES[dtype][0]


def numpy_view_dtype(dtype: str):
    return _TYPES[dtype][1]


def bf16_bits_to_float32(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits into place."""
    if out is None:
        out = np.empty(bits.shape, np.float32)
    np.left_shift(bits, 16, out=out.view(np.uint32), dtype=np.uint32)
    return out

