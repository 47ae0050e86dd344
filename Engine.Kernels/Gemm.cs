using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Single-precision GEMM, row-major, BLAS conventions (see GemmShape).

// ===== Host twin =====
public static partial class Gemm
{
    /// <summary>C = alpha op(A) op(B) + beta C. Dispatches to the fastest host version.</summary>
    public static void Host(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
        => Host_V2Blocked(c, a, b, s);

    /// <summary>Buffer-length checks shared by every host version; messages name the operand and the shape.</summary>
    static void CheckHostArgs(int cLength, int aLength, int bLength, GemmShape s)
    {
        if (s.M < 0 || s.N < 0 || s.K < 0)
            throw new ArgumentException($"GEMM dimensions must be non-negative: {s}");
        if (s.M == 0 || s.N == 0) return;
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        if (ldc < s.N || lda < (s.TransA ? s.M : s.K) || ldb < (s.TransB ? s.K : s.N))
            throw new ArgumentException($"GEMM leading dimension too small (lda {lda}, ldb {ldb}, ldc {ldc}): {s}");
        if (s.K > 0)
        {
            Check.AtLeast("A", aLength, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K, s);
            Check.AtLeast("B", bLength, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N, s);
        }
        Check.AtLeast("C", cLength, (long)(s.M - 1) * ldc + s.N, s);
    }

    /// <summary>
    /// Version 2: packed, cache-blocked, 6x16 AVX2/FMA micro-kernel, parallel over cores (see HostGemmKernels).
    /// Summation order differs from V1 (FMA, blocks of 256 along K), so results agree to rounding, not bits.
    /// </summary>
    public static unsafe void Host_V2Blocked(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        fixed (float* pc = c) fixed (float* pa = a) fixed (float* pb = b)
            HostGemmKernels.Gemm(pc, pa, pb, s, default);
    }

    /// <summary>Version 2 with the portable <see cref="System.Numerics.Vector{T}"/> micro-kernel forced, the
    /// path taken on CPUs without 256-bit SIMD; public so tests cover it on every machine.</summary>
    public static unsafe void Host_V2BlockedPortable(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        fixed (float* pc = c) fixed (float* pa = a) fixed (float* pb = b)
            HostGemmKernels.Gemm(pc, pa, pb, s, default, portable: true);
    }

    /// <summary>Version 1: triple loop with double-free float accumulation. The specification.</summary>
    public static void Host_V1Naive(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++)
        {
            float acc = 0f;
            for (int p = 0; p < s.K; p++)
            {
                float av = s.TransA ? a[p * lda + i] : a[i * lda + p];
                float bv = s.TransB ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            float prev = s.Beta == 0f ? 0f : s.Beta * c[i * ldc + j];
            c[i * ldc + j] = s.Alpha * acc + prev;
        }
    }
}




// ===== ILGPU kernels =====
