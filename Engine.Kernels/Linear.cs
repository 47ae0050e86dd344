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
