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

    /// <summary>dx (N, In) = dy (N, Out) W (W: (Out, In)). Activation gradient: dx is overwritten.</summary>
    /// <remarks>One blocked GEMM (no transposes, beta 0), parallel over cores.</remarks>
    public static unsafe void BackwardDataHost(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w,
        int n, int inFeatures, int outFeatures)
    {
        CheckSizes("linear backward-data", n, inFeatures, outFeatures);
        var shape = (n, inFeatures, outFeatures);
        Check.Length("dx", dx.Length, (long)n * inFeatures, shape);
        Check.Length("dy", dy.Length, (long)n * outFeatures, shape);
        Check.Length("w", w.Length, (long)outFeatures * inFeatures, shape);
        fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* pw = w)
            HostGemmKernels.Gemm(pdx, pdy, pw, new GemmShape(n, inFeatures, outFeatures), default);
    }

    /// <summary>
    /// dW (Out, In) += dy^T (Out, N) x (N, In); db (Out) += column sums of dy (N, Out). Parameter gradients:
    /// both accumulate. db may be empty (a layer without bias).
    /// </summary>
    /// <remarks>dW through the blocked GEMM with TransA and beta 1 (it reads C only when beta is non-zero),
    /// parallel over columns of dW: fc6 at batch 8 is a 4096 x 25088 update with K = 8.</remarks>
    public static unsafe void BackwardWeightHost(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        int n, int inFeatures, int outFeatures)
    {
        CheckSizes("linear backward-weight", n, inFeatures, outFeatures);
        var shape = (n, inFeatures, outFeatures);
        Check.Length("dw", dw.Length, (long)outFeatures * inFeatures, shape);
        if (db.Length != 0) Check.Length("db", db.Length, outFeatures, shape);
        Check.Length("dy", dy.Length, (long)n * outFeatures, shape);
        Check.Length("x", x.Length, (long)n * inFeatures, shape);
        fixed (float* pdw = dw) fixed (float* pdy = dy) fixed (float* px = x)
            HostGemmKernels.Gemm(pdw, pdy, px, new GemmShape(outFeatures, inFeatures, n, TransA: true, Beta: 1f), default);
        if (db.Length != 0) ColumnSumAddHost(db, dy, n, outFeatures);
    }

    /// <summary>db[j] += sum over rows i of dy[i, j], rows summed in order in float (the GPU kernel's order).</summary>
    internal static void ColumnSumAddHost(Span<float> db, ReadOnlySpan<float> dy, int rows, int cols)
    {
        for (int j = 0; j < cols; j++)
        {
            float sum = 0f;
            for (int i = 0; i < rows; i++) sum += dy[i * cols + j];
            db[j] += sum;
        }
    }

    internal static void CheckSizes(string op, int n, int inFeatures, int outFeatures)
    {
        if (n <= 0 || inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentException($"{op}: sizes must be positive, got (n={n}, in={inFeatures}, out={outFeatures})");
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// Fully connected layer on an ILGPU accelerator: y (N, Out) = x (N, In) W^T (W: (Out, In)) + b (Out), then
/// ReLU if asked, as one GEMM with TransB and a fused bias/ReLU epilogue (no extra pass over y). Backward:
/// dx = dy W (GEMM), dW += dy^T x (GEMM with TransA, beta 1), db += column sums of dy (one thread per column).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class LinearGpu : IDisposable
{
    private readonly Accelerator _acc;
    private readonly GemmGpu _gemm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _columnSumAdd;

    public LinearGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _gemm = new GemmGpu(accelerator);
        _columnSumAdd = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(ColumnSumAddKernel);
    }

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

    /// <summary>dx (N, In) = dy (N, Out) W (W: (Out, In)); dx is overwritten.</summary>
    public void BackwardData(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, int n, int inFeatures, int outFeatures)
        => BackwardData(DefaultVersion, dx, dy, w, n, inFeatures, outFeatures);

    public void BackwardData(GemmVersion version, ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w,
        int n, int inFeatures, int outFeatures)
    {
        Linear.CheckSizes("linear backward-data", n, inFeatures, outFeatures);
        var shape = (n, inFeatures, outFeatures);
        Check.Length("dx", dx.Length, (long)n * inFeatures, shape);
        Check.Length("dy", dy.Length, (long)n * outFeatures, shape);
        Check.Length("w", w.Length, (long)outFeatures * inFeatures, shape);
        _gemm.Run(version, dx, dy, w, new GemmShape(n, inFeatures, outFeatures));
    }

    /// <summary>dW (Out, In) += dy^T x; db (Out) += column sums of dy when <paramref name="hasBias"/> (db is not read otherwise).</summary>
    public void BackwardWeight(ArrayView<float> dw, ArrayView<float> db, ArrayView<float> dy, ArrayView<float> x,
        int n, int inFeatures, int outFeatures, bool hasBias = true)
        => BackwardWeight(DefaultVersion, dw, db, dy, x, n, inFeatures, outFeatures, hasBias);

    public void BackwardWeight(GemmVersion version, ArrayView<float> dw, ArrayView<float> db, ArrayView<float> dy, ArrayView<float> x,
        int n, int inFeatures, int outFeatures, bool hasBias = true)
    {
        Linear.CheckSizes("linear backward-weight", n, inFeatures, outFeatures);
        var shape = (n, inFeatures, outFeatures);
        Check.Length("dw", dw.Length, (long)outFeatures * inFeatures, shape);
        if (hasBias) Check.Length("db", db.Length, outFeatures, shape);
        Check.Length("dy", dy.Length, (long)n * outFeatures, shape);
        Check.Length("x", x.Length, (long)n * inFeatures, shape);
        _gemm.Run(version, dw, dy, x, new GemmShape(outFeatures, inFeatures, n, TransA: true, Beta: 1f));
        if (!hasBias) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        _columnSumAdd(Accelerators.GridStride(_acc, outFeatures, gs), db, dy, n, outFeatures);
    }

    public void Dispose() => _gemm.Dispose();

    /// <summary>db[j] += sum over rows of dy (rows, cols)[i, j]; one thread per column (consecutive threads read
    /// consecutive columns of a row), rows summed in order, as <see cref="Linear.ColumnSumAddHost"/>.</summary>
    private static void ColumnSumAddKernel(ArrayView<float> db, ArrayView<float> dy, int rows, int cols)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long j = Grid.GlobalIndex.X; j < cols; j += stride)
        {
            float sum = 0f;
            for (int i = 0; i < rows; i++) sum += dy[(long)i * cols + j];
            db[j] += sum;
        }
    }
}
