using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>Small AVX2 helpers of the host twins; each returns how far it got so the caller's scalar loop finishes.</summary>
internal static unsafe class HostSimd
{
    /// <summary>
    /// One output row of 2x2 stride-2 max pooling: y[ox] = max(r0[2ox], r0[2ox+1], r1[2ox], r1[2ox+1]) for ox in
    /// [0, returned), 8 outputs (16 input columns) at a time. A NaN anywhere in a window wins, as in the V1 loop.
    /// </summary>
    public static int MaxPool2x2Row(float* y, float* r0, float* r1, int ow)
    {
        int ox = 0;
        if (!Avx2.IsSupported) return 0;
        for (; ox + 8 <= ow; ox += 8)
        {
            var v0 = NanMax(Avx.LoadVector256(r0 + 2 * ox), Avx.LoadVector256(r1 + 2 * ox));
            var v1 = NanMax(Avx.LoadVector256(r0 + 2 * ox + 8), Avx.LoadVector256(r1 + 2 * ox + 8));
            var even = Avx.Shuffle(v0, v1, 0b10_00_10_00); // per 128-bit lane: v0[0], v0[2], v1[0], v1[2]
            var odd = Avx.Shuffle(v0, v1, 0b11_01_11_01);
            var m = NanMax(even, odd);                     // outputs in 64-bit pairs ordered 0, 2, 1, 3
            Avx.Store(y + ox, Avx2.Permute4x64(m.AsDouble(), 0b11_01_10_00).AsSingle());
        }
        return ox;
    }

    /// <summary>
    /// One window row of 2x2 stride-2 max-pool backward: for ox in [0, returned), the window a = r0[2ox],
    /// b = r0[2ox+1], c = r1[2ox], d = r1[2ox+1] is scanned in that (row-major) order, a value taken when it is
    /// greater than the running max or NaN, and the taken-last position gets 0 + g[ox], the other three +0: d0/d1
    /// (dx rows 2oy and 2oy+1) end as the V1 loop's clear-then-add leaves them. 8 windows at a time (4 when the
    /// row has fewer than 8); a row that is not a multiple ends with a block overlapping the previous one, which
    /// rewrites the same values (each output depends on x and dy only). Returns 0 for rows under 4 windows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int MaxPool2x2BackwardRow(float* d0, float* d1, float* g, float* r0, float* r1, int ow)
    {
        if (!Avx2.IsSupported || ow < 4) return 0;
        if (ow < 8)
        {
            MaxPool2x2Backward4(d0, d1, g, r0, r1, 0);
            MaxPool2x2Backward4(d0, d1, g, r0, r1, ow - 4);
            return ow;
        }
        for (int ox = 0; ; ox += 8)
        {
            if (ox + 8 > ow) ox = ow - 8;
            MaxPool2x2Backward8(d0, d1, g, r0, r1, ox);
            if (ox + 8 == ow) return ow;
        }
    }

    /// <summary>Windows ox .. ox+7 of <see cref="MaxPool2x2BackwardRow"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void MaxPool2x2Backward8(float* d0, float* d1, float* g, float* r0, float* r1, int ox)
    {
        var p0 = Avx.LoadVector256(r0 + 2 * ox); var p1 = Avx.LoadVector256(r0 + 2 * ox + 8);
        var q0 = Avx.LoadVector256(r1 + 2 * ox); var q1 = Avx.LoadVector256(r1 + 2 * ox + 8);
        // Windows in 64-bit pairs ordered 0, 2, 1, 3 (per 128-bit lane: v0[0], v0[2], v1[0], v1[2]).
        var a = Avx.Shuffle(p0, p1, 0b10_00_10_00); var b = Avx.Shuffle(p0, p1, 0b11_01_11_01);
        var c = Avx.Shuffle(q0, q1, 0b10_00_10_00); var d = Avx.Shuffle(q0, q1, 0b11_01_11_01);
        var takeB = Takes(b, a); var m = Avx.BlendVariable(a, b, takeB);
        var takeC = Takes(c, m); m = Avx.BlendVariable(m, c, takeC);
        var takeD = Takes(d, m);
        // dy into the same pair order (the permutation is its own inverse); + 0 turns -0 into +0 as 0 + dy does.
        var gv = Avx.Add(Avx2.Permute4x64(Avx.LoadVector256(g + ox).AsDouble(), 0b11_01_10_00).AsSingle(), Vector256<float>.Zero);
        var gd = Avx.And(takeD, gv);                       // the last position taken wins
        var rest = Avx.AndNot(takeD, gv);
        var gc = Avx.And(takeC, rest);
        rest = Avx.AndNot(takeC, rest);
        var gb = Avx.And(takeB, rest);
        var ga = Avx.AndNot(takeB, rest);
        // Interleaving the pairs back gives columns in order: low halves 0..7, high halves 8..15.
        Avx.Store(d0 + 2 * ox, Avx.UnpackLow(ga, gb)); Avx.Store(d0 + 2 * ox + 8, Avx.UnpackHigh(ga, gb));
        Avx.Store(d1 + 2 * ox, Avx.UnpackLow(gc, gd)); Avx.Store(d1 + 2 * ox + 8, Avx.UnpackHigh(gc, gd));
    }

    /// <summary>Windows ox .. ox+3 of <see cref="MaxPool2x2BackwardRow"/> (one 128-bit lane: no pair reordering).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void MaxPool2x2Backward4(float* d0, float* d1, float* g, float* r0, float* r1, int ox)
    {
        var p0 = Sse.LoadVector128(r0 + 2 * ox); var p1 = Sse.LoadVector128(r0 + 2 * ox + 4);
        var q0 = Sse.LoadVector128(r1 + 2 * ox); var q1 = Sse.LoadVector128(r1 + 2 * ox + 4);
        var a = Sse.Shuffle(p0, p1, 0b10_00_10_00); var b = Sse.Shuffle(p0, p1, 0b11_01_11_01);
        var c = Sse.Shuffle(q0, q1, 0b10_00_10_00); var d = Sse.Shuffle(q0, q1, 0b11_01_11_01);
        var takeB = Takes(b, a); var m = Sse41.BlendVariable(a, b, takeB);
        var takeC = Takes(c, m); m = Sse41.BlendVariable(m, c, takeC);
        var takeD = Takes(d, m);
        var gv = Sse.Add(Sse.LoadVector128(g + ox), Vector128<float>.Zero);
        var gd = Sse.And(takeD, gv);
        var rest = Sse.AndNot(takeD, gv);
        var gc = Sse.And(takeC, rest);
        rest = Sse.AndNot(takeC, rest);
        var gb = Sse.And(takeB, rest);
        var ga = Sse.AndNot(takeB, rest);
        Sse.Store(d0 + 2 * ox, Sse.UnpackLow(ga, gb)); Sse.Store(d0 + 2 * ox + 4, Sse.UnpackHigh(ga, gb));
        Sse.Store(d1 + 2 * ox, Sse.UnpackLow(gc, gd)); Sse.Store(d1 + 2 * ox + 4, Sse.UnpackHigh(gc, gd));
    }

    /// <summary>All-ones lanes where v replaces the running max m under PyTorch's rule: v &gt; m or v is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Takes(Vector128<float> v, Vector128<float> m)
        => Sse.Or(Sse.CompareGreaterThan(v, m), Sse.CompareUnordered(v, v));

    /// <summary>All-ones lanes where v replaces the running max m under PyTorch's rule: v &gt; m or v is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Takes(Vector256<float> v, Vector256<float> m)
        => Avx.Or(Avx.CompareGreaterThan(v, m), Avx.CompareUnordered(v, v));

    /// <summary>max(a, b) where a NaN in either wins (maxps alone would return b for a NaN a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> NanMax(Vector256<float> a, Vector256<float> b)
    {
        var takeB = Avx.Or(Avx.CompareGreaterThan(b, a), Avx.CompareUnordered(b, b));
        return Avx.BlendVariable(a, b, takeB);
    }
}
