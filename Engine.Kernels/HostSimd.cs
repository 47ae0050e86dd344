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

    /// <summary>max(a, b) where a NaN in either wins (maxps alone would return b for a NaN a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> NanMax(Vector256<float> a, Vector256<float> b)
    {
        var takeB = Avx.Or(Avx.CompareGreaterThan(b, a), Avx.CompareUnordered(b, b));
        return Avx.BlendVariable(a, b, takeB);
    }
}
