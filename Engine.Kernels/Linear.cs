using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Fully connected layer y = x W^T + b (torchvision layout: W is (out, in)).
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin =====
public static partial class Linear
{
    /// <summary>y (N, Out) = x (N, In) W^T (W: (Out, In)) + b (Out), then ReLU if asked.</summary>
    /// <remarks>One blocked GEMM with TransB; bias and ReLU are applied in its epilogue, so y is written once.</remarks>
    public static unsafe void ForwardHost(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        int n, int inFeatures, int outFeatures, bool relu)
    {
        var shape = (n, inFeatures, outFeatures);
        Check.Length("y", y.Length, (long)n * outFeatures, shape);
        Check.Length("x", x.Length, (long)n * inFeatures, shape);
        Check.Length("w", w.Length, (long)outFeatures * inFeatures, shape);
        Check.Length("b", b.Length, outFeatures, shape);
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
            HostGemmKernels.Gemm(py, px, pw, new GemmShape(n, outFeatures, inFeatures, TransB: true),
                new GemmEpilogue(ColBias: (nint)pb, Relu: relu));
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// Fully connected layer on an ILGPU accelerator: y (N, Out) = x (N, In) W^T (W: (Out, In)) + b (Out), then
/// ReLU if asked, as one GEMM with TransB and a fused bias/ReLU epilogue (no extra pass over y).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class LinearGpu : IDisposable
{
    private readonly GemmGpu _gemm;

    public LinearGpu(Accelerator accelerator) => _gemm = new GemmGpu(accelerator);

    public GemmVersion DefaultVersion => _gemm.DefaultVersion;

    public void Forward(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        int n, int inFeatures, int outFeatures, bool relu)
        => Forward(DefaultVersion, y, x, w, b, n, inFeatures, outFeatures, relu);

    public void Forward(GemmVersion version, ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        int n, int inFeatures, int outFeatures, bool relu)
    {
        if (n <= 0 || inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentException($"linear: sizes must be positive, got (n={n}, in={inFeatures}, out={outFeatures})");
        var shape = (n, inFeatures, outFeatures);
        Check.Length("y", y.Length, (long)n * outFeatures, shape);
        Check.Length("x", x.Length, (long)n * inFeatures, shape);
        Check.Length("w", w.Length, (long)outFeatures * inFeatures, shape);
        Check.Length("b", b.Length, outFeatures, shape);
        _gemm.RunWithBias(version, y, x, w, b, new GemmShape(n, outFeatures, inFeatures, TransB: true), relu);
    }

    public void Dispose() => _gemm.Dispose();
}
