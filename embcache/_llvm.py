"""LLVM operations for the Numba code (kernels/cpu.py, tiers/host.py), where Numba's own is slow.

* ``match32(table, base, key)`` (and 8, 16, 64): which of the 32 int64 (or uint8: digests) entries
  ``table[base:base + 32]`` equal ``key``, as the bits of a uint64 (bit ``w`` for entry ``base + w``).  One
  vector load and one vector compare (``icmp eq <ways x i64>`` or ``<ways x i8>``, a few AVX-512 or AVX2
  instructions): Numba's own loop over the ways, indexed by a signed int64, checks every index for
  wraparound and LLVM then compiles the loads as gathers, about 30 cycles for a 32-way set against about 4 here.
* ``copy_bytes(dst, i, src, j, nbytes)``: row ``j`` of ``src`` copied onto row ``i`` of ``dst``
  (``nbytes`` bytes each, both C-contiguous 2-D: other arrays do not compile), as ``llvm.memcpy``: a
  constant ``nbytes`` becomes a few vector moves, where Numba's element loop moves one element at a
  time and a row slice's assignment (``out[i, :] = values[r]``) costs about three times the copy.

* ``prefetch(array, i)``: a hint (``llvm.prefetch``, read, into every cache level) that element ``i`` of
  ``array`` (its flat index in C order) will be read soon, and ``prefetch_row(array, i, nbytes)`` the same
  for each 64-byte line of a row: the CPU probe and gather read sets and rows at random, and a hint some
  keys ahead overlaps those misses where the loop's dependent loads did not.

``copy_row`` is ``copy_bytes`` at the arrays' row size, a constant one where it is common.  None checks
bounds: the callers index rows and sets they have computed.  All give exactly what the plain loops give
(a bit per equal entry; the same bytes).
"""
from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

__all__: list[str] = []  # private: the kernels' building blocks

MATCH_WIDTHS = (8, 16, 32, 64)  # ways match_ways compiles as one vector compare


def _match(width: int):
    @intrinsic
    def match(typingctx, table, base, key):
        if not (isinstance(table, types.Array) and table.dtype in (types.int64, types.uint8) and table.ndim == 1
                and table.aligned and isinstance(key, types.Integer)):
            return None
        if table.dtype == types.uint8 and key != types.uint8:
            return None  # a wider key would be cut to a byte, where _ways_matching's loop compares its value
        sig = types.uint64(table, base, key)

        def codegen(context, builder, signature, args):
            array = context.make_array(signature.args[0])(context, builder, args[0])
            element = signature.args[0].dtype
            bits = 8 * context.get_abi_sizeof(context.get_data_type(element))
            vector = ir.VectorType(ir.IntType(bits), width)
            start = context.cast(builder, args[1], signature.args[1], types.int64)
            wanted = context.cast(builder, args[2], signature.args[2], element)
            entries = builder.load(builder.bitcast(builder.gep(array.data, [start]), vector.as_pointer()),
                                   align=bits // 8)
            splat = builder.insert_element(ir.Constant(vector, ir.Undefined), wanted, ir.Constant(ir.IntType(32), 0))
            splat = builder.shuffle_vector(splat, ir.Constant(vector, ir.Undefined),
                                           ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))
            mask = builder.bitcast(builder.icmp_unsigned("==", entries, splat), ir.IntType(width))
            return mask if width == 64 else builder.zext(mask, ir.IntType(64))

        return sig, codegen

    return match


match8, match16, match32, match64 = (_match(w) for w in MATCH_WIDTHS)


def _prefetch_call(builder, pointer):
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
    # read (0), high locality (3: keep in every level), data (1)
    builder.call(fn, [builder.bitcast(pointer, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])


@intrinsic
def prefetch(typingctx, array, i):
    """A hint that element ``i`` (flat, C order) of ``array`` is read soon; no effect on results."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        return None
    sig = types.void(array, i)

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        at = context.cast(builder, args[1], signature.args[1], types.int64)
        _prefetch_call(builder, builder.gep(a.data, [at]))
        return context.get_dummy_value()

    return sig, codegen


_PREFETCH_LINES = 8  # a row's first 512 bytes: hints, not copies, so a longer row's rest is left to the copy


@intrinsic
def prefetch_row(typingctx, array, i, nbytes):
    """Hints for the 64-byte lines of row ``i`` of a C-contiguous 2-D ``array`` whose rows are ``nbytes``
    bytes (its first 512).  Byte offsets, as ``copy_bytes`` computes them: an index scaled by the array's
    itemsize, a field Numba reads at run time, cost a division a row where the loop computed it."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"):
        return None
    sig = types.void(array, i, nbytes)

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        size = context.cast(builder, args[2], signature.args[2], types.int64)
        row = context.cast(builder, args[1], signature.args[1], types.int64)
        first = builder.gep(builder.bitcast(a.data, ir.IntType(8).as_pointer()), [builder.mul(row, size)])
        for line in range(_PREFETCH_LINES):  # the compares fold away for a constant nbytes
            with builder.if_then(builder.icmp_signed(">", size, ir.Constant(i64, 64 * line))):
                _prefetch_call(builder, builder.gep(first, [ir.Constant(i64, 64 * line)]))
        # a row that ends past a line boundary the steps above missed (a size not a multiple of 64)
        ragged = builder.icmp_signed("!=", builder.and_(size, ir.Constant(i64, 63)), ir.Constant(i64, 0))
        short = builder.icmp_signed("<", size, ir.Constant(i64, 64 * _PREFETCH_LINES))
        with builder.if_then(builder.and_(ragged, short)):
            _prefetch_call(builder, builder.gep(first, [builder.sub(size, ir.Constant(i64, 1))]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def copy_bytes(typingctx, dst, i, src, j, nbytes):
    """Row ``j`` of ``src`` onto row ``i`` of ``dst``: ``nbytes`` bytes (rows of that size, C-contiguous)."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" for a in (dst, src)):
        return None  # byte offsets row * nbytes hold for C-contiguous 2-D arrays only
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


@numba.njit(inline="always", nogil=True, cache=True)
def copy_row(dst, i, src, j):
    """Row ``j`` of ``src`` onto row ``i`` of ``dst`` (C-contiguous 2-D, rows of the same bytes)."""
    nbytes = src.shape[1] * src.itemsize
    if nbytes == 128:  # dim 32 float32, dim 64 16-bit: a constant size is a few vector moves
        copy_bytes(dst, i, src, j, 128)
    elif nbytes == 256:
        copy_bytes(dst, i, src, j, 256)
    elif nbytes == 64:
        copy_bytes(dst, i, src, j, 64)
    elif nbytes == 512:
        copy_bytes(dst, i, src, j, 512)
    else:
        copy_bytes(dst, i, src, j, nbytes)
