using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Element-wise activations, softmax over rows, dropout (identity at inference).

// ===== Host twin =====
public static partial class Activations
{
    /// <summary>y = max(x, 0); y and x may be the same buffer.</summary>
    public static void ReluHost(Span<float> y, ReadOnlySpan<float> x)
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
