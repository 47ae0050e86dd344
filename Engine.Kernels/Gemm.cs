using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Single-precision GEMM, row-major, BLAS conventions (see GemmShape).

// ===== Host twin =====
public static partial class Gemm
{
    /// <summary>C = alpha op(A) op(B) + beta C. Dispatches to the fastest host version.</summary>
    public static void Host(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
        => Host_V1Naive(c, a, b, s);

    /// <summary>Version 1: triple loop with double-free float accumulation. The specification.</summary>
    public static void Host_V1Naive(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        Check.AtLeast("A", a.Length, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K, s);
        Check.AtLeast("B", b.Length, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N, s);
        Check.AtLeast("C", c.Length, (long)(s.M - 1) * ldc + s.N, s);
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
