"""Two LLVM operations the Numba kernels (cpu.py) are written with, where Numba's own code is slow.

* ``match_ways(table, base, key, ways)``: which of the ``ways`` int64 entries ``table[base:base + ways]``
  equal ``key``, as the bits of a uint64 (bit ``w`` for entry ``base + w``).  One vector load and one
  vector compare (``icmp eq <ways x i64>``, a few AVX-512 or AVX2 instructions): Numba's own loop over
  the ways, indexed by a signed int64, checks every index for wraparound and LLVM then compiles the
  loads as gathers, about 30 cycles for a 32-way set against about 4 here.
* ``copy_bytes(dst, i, src, j, nbytes)``: row ``j`` of ``src`` copied onto row ``i`` of ``dst``
  (``nbytes`` bytes each, both C-contiguous 2-D), as ``llvm.memcpy``: a constant ``nbytes`` becomes
  a few vector moves, where Numba's element loop moves one element at a time.

Neither checks bounds: the callers index rows and sets they have computed.  Both give exactly what the
plain loops give (a bit per equal entry; the same bytes).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

__all__: list[str] = []  # private: the kernels' building blocks

MATCH_WIDTHS = (8, 16, 32, 64)  # ways match_ways compiles as one vector compare


def _match(width: int):
    @intrinsic
    def match(typingctx, table, base, key):
        if not (isinstance(table, types.Array) and table.dtype == types.int64 and table.ndim == 1):
            return None
        sig = types.uint64(table, base, key)

        def codegen(context, builder, signature, args):
            array = context.make_array(signature.args[0])(context, builder, args[0])
            i64 = ir.IntType(64)
            vector = ir.VectorType(i64, width)
            start = context.cast(builder, args[1], signature.args[1], types.int64)
            wanted = context.cast(builder, args[2], signature.args[2], types.int64)
            entries = builder.load(builder.bitcast(builder.gep(array.data, [start]), vector.as_pointer()), align=8)
            splat = builder.insert_element(ir.Constant(vector, ir.Undefined), wanted, ir.Constant(ir.IntType(32), 0))
            splat = builder.shuffle_vector(splat, ir.Constant(vector, ir.Undefined),
                                           ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))
            bits = builder.bitcast(builder.icmp_unsigned("==", entries, splat), ir.IntType(width))
            return bits if width == 64 else builder.zext(bits, i64)

        return sig, codegen

    return match


match8, match16, match32, match64 = (_match(w) for w in MATCH_WIDTHS)


@intrinsic
def copy_bytes(typingctx, dst, i, src, j, nbytes):
    """Row ``j`` of ``src`` onto row ``i`` of ``dst``: ``nbytes`` bytes (rows of that size, C-contiguous)."""
    sig = types.void(dst, i, src, j, nbytes)

    def codegen(context, builder, signature, args):
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        i8p = ir.IntType(8).as_pointer()
        size = context.cast(builder, args[4], signature.args[4], types.int64)
        at = context.cast(builder, args[1], signature.args[1], types.int64)
        frm = context.cast(builder, args[3], signature.args[3], types.int64)
        to = builder.gep(builder.bitcast(d.data, i8p), [builder.mul(at, size)])
        fro = builder.gep(builder.bitcast(s.data, i8p), [builder.mul(frm, size)])
        cgutils.raw_memcpy(builder, to, fro, size, 1)
        return context.get_dummy_value()

    return sig, codegen
