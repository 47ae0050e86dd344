using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Element-wise activations, softmax over rows, dropout (identity at inference).

// ===== Host twin =====
public static partial class Activations
{
    /// <summary>y = max(x, 0); y and x may be the same buffer. Fastest host version.</summary>
    public static void ReluHost(Span<float> y, ReadOnlySpan<float> x) => ReluHost_V2Simd(y, x);

    /// <summary>Version 2: 8 lanes at a time, chunks in parallel for big tensors; same rule as V1 (NaN passes).</summary>
    public static unsafe void ReluHost_V2Simd(Span<float> y, ReadOnlySpan<float> x)
    {
        Check.Length("y", y.Length, x.Length, "relu");
        const int Chunk = 1 << 16;
        fixed (float* py = y) fixed (float* px = x)
        {
            nint yp = (nint)py, xp = (nint)px;
            int n = x.Length, chunks = (n + Chunk - 1) / Chunk;
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
            void Run(int ch)
            {
                float* yo = (float*)yp, xi = (float*)xp;
                int i = ch * Chunk, end = Math.Min(n, i + Chunk);
                var z = System.Runtime.Intrinsics.Vector256<float>.Zero;
                for (; i + 8 <= end; i += 8)
                {
                    var v = System.Runtime.Intrinsics.Vector256.Load(xi + i);
                    System.Runtime.Intrinsics.Vector256.Store(
                        System.Runtime.Intrinsics.Vector256.ConditionalSelect(System.Runtime.Intrinsics.Vector256.LessThan(v, z), z, v), yo + i);
                }
                for (; i < end; i++) yo[i] = xi[i] < 0f ? 0f : xi[i];
            }
            if (chunks <= 2) for (int ch = 0; ch < chunks; ch++) Run(ch);
            else Parallel.For(0, chunks, Run);
        }
    }

    /// <summary>Version 1: one element at a time. The specification.</summary>
    public static void ReluHost_V1Naive(Span<float> y, ReadOnlySpan<float> x)
    {
        Check.Length("y", y.Length, x.Length, "relu");
        for (int i = 0; i < x.Length; i++) y[i] = x[i] < 0f ? 0f : x[i];
    }

    /// <summary>Row-wise softmax of x (rows, cols), max-subtracted, sum in double.</summary>
    public static void SoftmaxHost(Span<float> y, ReadOnlySpan<float> x, int rows, int cols)
    {
        Check.Length("y", y.Length, (long)rows * cols, (rows, cols));
        Check.Length("x", x.Length, (long)rows * cols, (rows, cols));
        for (int r = 0; r < rows; r++)
        {
            var xi = x.Slice(r * cols, cols);
            var yo = y.Slice(r * cols, cols);
            float m = float.NegativeInfinity;
            foreach (var v in xi) m = MathF.Max(m, v);
            double sum = 0;
            for (int j = 0; j < cols; j++) { yo[j] = MathF.Exp(xi[j] - m); sum += yo[j]; }
            float inv = (float)(1.0 / sum);
            for (int j = 0; j < cols; j++) yo[j] *= inv;
        }
    }
}




// ===== ILGPU kernels =====
