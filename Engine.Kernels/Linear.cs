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




/// <summary>
/// The sizes of y (N, Out) = x (N, In) Wᵀ + b and what computing it must move. At small N the layer is a matrix-vector
/// product: 2·N flops per weight read, far below an H100's fp32 ridge (~20 flop/byte), so its time is bounded below by
/// reading W once from memory; <see cref="GemvBytes"/> is that traffic, the figure the profiler and the bench divide
/// by the measured time to report a fraction of HBM bandwidth.
/// </summary>
public readonly record struct LinearShape(int N, int In, int Out)
{
    public double Flops => 2.0 * N * (long)In * Out;

    /// <summary>Bytes a single pass over the weights moves: W, x and b read once, y written once.</summary>
    public double GemvBytes => 4.0 * ((long)Out * In + (long)N * In + Out + (long)N * Out);

    /// <summary>Seconds <see cref="GemvBytes"/> takes at <paramref name="bytesPerSecond"/>: the bound the GEMV is written to reach.</summary>
    public double BandwidthBoundSeconds(double bytesPerSecond) => GemvBytes / bytesPerSecond;

    public override string ToString() => $"N={N} in={In} out={Out}";
}

// ===== ILGPU kernels =====

/// <summary>Kernel arguments of the GEMV: x (M, In), W (Out, In), K4 = In / 4 for the vectorised version.</summary>
internal readonly struct GemvArgs
{
    public readonly int M, In, Out, K4, Relu;

    public GemvArgs(int m, int inFeatures, int outFeatures, bool relu)
    {
        M = m; In = inFeatures; Out = outFeatures; K4 = inFeatures / 4; Relu = relu ? 1 : 0;
    }
}

/// <summary>Partial sums of one row of x against the four weight rows a GEMV group owns.</summary>
internal struct Rows4
{
    public float R0, R1, R2, R3;
}

/// <summary>
/// Fully connected layer on an ILGPU accelerator: y (N, Out) = x (N, In) W^T (W: (Out, In)) + b (Out), then
/// ReLU if asked. At N ≤ <see cref="GemvMaxRows"/> a GEMV that reads W once, spread over Out / 4 groups; above, one
/// GEMM with TransB and a fused bias/ReLU epilogue (no extra pass over y). Backward:
/// dx = dy W (GEMM), dW += dy^T x (GEMM with TransA, beta 1), db += column sums of dy (one thread per column).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class LinearGpu : IDisposable
{
    private readonly Accelerator _acc;
    private readonly GemmGpu _gemm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _columnSumAdd;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<Float4>, ArrayView<Float4>, ArrayView<float>, GemvArgs> _gemvVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemvArgs> _gemvScalar;

    /// <summary>
    /// Most rows of x the GEMV takes in its one pass over W: each thread keeps 8 x 4 partial sums (8 rows of x against
    /// the group's 4 rows of W) in registers. At 8 rows it does 16 flops per 4-byte weight, still under the fp32 ridge
    /// of an H100 or H200 (~20 flop/byte), so it stays memory-bound while the 64 x 64 tiled GEMM would launch only
    /// Out / 64 groups (16 for VGG16's fc8) on 132 multiprocessors; more rows would need a second pass over W.
    /// </summary>
    public const int GemvMaxRows = 8;
    /// <summary>Rows of W (outputs) per GEMV group: each x element loaded feeds four of them.</summary>
    public const int GemvRowsPerGroup = 4;
    // Shared-memory row of the GEMV's first reduction stage: 256 threads + 8 so that the 8 threads reducing one value
    // and their 4 neighbours' values fall in 32 distinct banks.
    private const int GemvRedStride = 264;
    private const int GemvMaxGroup = 256;

    public LinearGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _gemm = new GemmGpu(accelerator);
        _columnSumAdd = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(ColumnSumAddKernel);
        _gemvVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<Float4>, ArrayView<Float4>, ArrayView<float>, GemvArgs>(GemvVec4Kernel);
        _gemvScalar = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemvArgs>(GemvScalarKernel);
    }

    public GemmVersion DefaultVersion => _gemm.DefaultVersion;

    /// <summary>y = x Wᵀ + b (then ReLU): the GEMV at n ≤ <see cref="GemvMaxRows"/>, else the default GEMM version.</summary>
    public void Forward(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        int n, int inFeatures, int outFeatures, bool relu)
    {
        if (n >= 1 && n <= GemvMaxRows) ForwardGemv(y, x, w, b, n, inFeatures, outFeatures, relu);
        else Forward(DefaultVersion, y, x, w, b, n, inFeatures, outFeatures, relu);
    }

    /// <summary>Whether <see cref="ForwardGemv"/> reads x and W as 16-byte vectors for these views and sizes.</summary>
    public static bool GemvVectorised(ArrayView<float> x, ArrayView<float> w, int inFeatures)
        => inFeatures % 4 == 0 && KernelIndex.Aligned16(x) && KernelIndex.Aligned16(w);

    /// <summary>
    /// The GEMV version, n ≤ <see cref="GemvMaxRows"/>: group g computes outputs 4g .. 4g+3 of every row of x, its
    /// threads striding along In (16-byte loads of x and W when In is a multiple of 4 and both views are 16-byte
    /// aligned, scalar loads otherwise), the 256 partial sums of each output added in shared memory, bias and ReLU
    /// fused into the store. W is read once: it moves <see cref="LinearShape.GemvBytes"/>.
    /// </summary>
    public void ForwardGemv(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        int n, int inFeatures, int outFeatures, bool relu)
    {
        if (n <= 0 || inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentException($"linear: sizes must be positive, got (n={n}, in={inFeatures}, out={outFeatures})");
        if (n > GemvMaxRows)
            throw new ArgumentException($"linear GEMV: takes at most {GemvMaxRows} rows of x, got n={n}; use the GEMM version");
        var shape = (n, inFeatures, outFeatures);
        Check.Length("y", y.Length, (long)n * outFeatures, shape);
        Check.Length("x", x.Length, (long)n * inFeatures, shape);
        Check.Length("w", w.Length, (long)outFeatures * inFeatures, shape);
        Check.Length("b", b.Length, outFeatures, shape);
        // On ILGPU's CPU accelerator every thread is an OS thread and barriers are slow; the reduction is the same
        // code for any group size of at least 8, so a small group keeps tests quick there.
        int gs = Accelerators.GroupSize(_acc, _acc.AcceleratorType == AcceleratorType.CPU ? 64 : GemvMaxGroup);
        if (gs < 8)
            throw new NotSupportedException($"linear GEMV: needs 8 threads per group, '{_acc.Name}' allows {_acc.MaxNumThreadsPerGroup}");
        var grid = new KernelConfig((outFeatures + GemvRowsPerGroup - 1) / GemvRowsPerGroup, gs);
        var args = new GemvArgs(n, inFeatures, outFeatures, relu);
        if (GemvVectorised(x, w, inFeatures)) _gemvVec4(grid, y, x.Cast<Float4>(), w.Cast<Float4>(), b, args);
        else _gemvScalar(grid, y, x, w, b, args);
    }

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

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Rows4 Dot4(Rows4 a, Float4 x, Float4 w0, Float4 w1, Float4 w2, Float4 w3)
    {
        a.R0 += x.X * w0.X + x.Y * w0.Y + x.Z * w0.Z + x.W * w0.W;
        a.R1 += x.X * w1.X + x.Y * w1.Y + x.Z * w1.Z + x.W * w1.W;
        a.R2 += x.X * w2.X + x.Y * w2.Y + x.Z * w2.Z + x.W * w2.W;
        a.R3 += x.X * w3.X + x.Y * w3.Y + x.Z * w3.Z + x.W * w3.W;
        return a;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Rows4 Dot1(Rows4 a, float x, float w0, float w1, float w2, float w3)
    {
        a.R0 += x * w0; a.R1 += x * w1; a.R2 += x * w2; a.R3 += x * w3;
        return a;
    }

    /// <summary>Row m of x as a view of <paramref name="rowLength"/> elements; rows past M alias the last one (they are never summed).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static ArrayView<T> Row<T>(ArrayView<T> v, int row, int rows, int rowLength) where T : unmanaged
        => v.SubView((long)Math.Min(row, rows - 1) * rowLength, rowLength);

    /// <summary>
    /// The GEMV's epilogue: the group's 4·M partial sums per thread go to shared memory (value v at red[v·264 + t]),
    /// 8 threads per value add strided eighths of them, one thread per value adds the 8 results in order, adds the bias,
    /// applies ReLU and stores y[m, j].
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void GemvReduceStore(ArrayView<float> y, ArrayView<float> b, GemvArgs a,
        Rows4 a0, Rows4 a1, Rows4 a2, Rows4 a3, Rows4 a4, Rows4 a5, Rows4 a6, Rows4 a7)
    {
        var red = SharedMemory.Allocate<float>(GemvMaxRows * GemvRowsPerGroup * GemvRedStride);
        var part = SharedMemory.Allocate<float>(GemvMaxRows * GemvRowsPerGroup * 8);
        int t = Group.IdxX, gs = Group.DimX, m = a.M;
        StoreRows(red, 0, t, a0);
        if (m > 1) StoreRows(red, 1, t, a1);
        if (m > 2) StoreRows(red, 2, t, a2);
        if (m > 3) StoreRows(red, 3, t, a3);
        if (m > 4) StoreRows(red, 4, t, a4);
        if (m > 5) StoreRows(red, 5, t, a5);
        if (m > 6) StoreRows(red, 6, t, a6);
        if (m > 7) StoreRows(red, 7, t, a7);
        Group.Barrier();
        int values = m * GemvRowsPerGroup;
        for (int task = t; task < values * 8; task += gs)
        {
            int v = task >> 3, s = task & 7;
            float sum = 0f;
            for (int i = s; i < gs; i += 8) sum += red[v * GemvRedStride + i];
            part[task] = sum;
        }
        Group.Barrier();
        int j0 = Grid.IdxX * GemvRowsPerGroup;
        for (int v = t; v < values; v += gs)
        {
            int row = v >> 2, j = j0 + (v & 3);
            if (j >= a.Out) continue;
            float sum = 0f;
            for (int s = 0; s < 8; s++) sum += part[v * 8 + s];
            sum += b[j];
            y[(long)row * a.Out + j] = a.Relu != 0 && sum < 0f ? 0f : sum;
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(ArrayView<float> red, int row, int t, Rows4 r)
    {
        int v = row * GemvRowsPerGroup * GemvRedStride + t;
        red[v] = r.R0;
        red[v + GemvRedStride] = r.R1;
        red[v + 2 * GemvRedStride] = r.R2;
        red[v + 3 * GemvRedStride] = r.R3;
    }

    /// <summary>
    /// GEMV with 16-byte loads (In a multiple of 4, views 16-byte aligned): group g owns outputs 4g .. 4g+3 (the last
    /// group's rows past Out re-read row Out-1 and are not stored), thread t walks float4 columns t, t + group, ...
    /// of its four W rows and of every x row, so consecutive threads read consecutive 16 bytes of each row.
    /// </summary>
    private static void GemvVec4Kernel(ArrayView<float> y, ArrayView<Float4> x, ArrayView<Float4> w, ArrayView<float> b, GemvArgs a)
    {
        int t = Group.IdxX, gs = Group.DimX, m = a.M, k4 = a.K4;
        int j0 = Grid.IdxX * GemvRowsPerGroup;
        var w0 = Row(w, j0, a.Out, k4);
        var w1 = Row(w, j0 + 1, a.Out, k4);
        var w2 = Row(w, j0 + 2, a.Out, k4);
        var w3 = Row(w, j0 + 3, a.Out, k4);
        var x0 = Row(x, 0, m, k4);
        var x1 = Row(x, 1, m, k4);
        var x2 = Row(x, 2, m, k4);
        var x3 = Row(x, 3, m, k4);
        var x4 = Row(x, 4, m, k4);
        var x5 = Row(x, 5, m, k4);
        var x6 = Row(x, 6, m, k4);
        var x7 = Row(x, 7, m, k4);
        Rows4 a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int k = t; k < k4; k += gs)
        {
            Float4 v0 = w0[k], v1 = w1[k], v2 = w2[k], v3 = w3[k];
            a0 = Dot4(a0, x0[k], v0, v1, v2, v3);
            if (m > 1) a1 = Dot4(a1, x1[k], v0, v1, v2, v3);
            if (m > 2) a2 = Dot4(a2, x2[k], v0, v1, v2, v3);
            if (m > 3) a3 = Dot4(a3, x3[k], v0, v1, v2, v3);
            if (m > 4) a4 = Dot4(a4, x4[k], v0, v1, v2, v3);
            if (m > 5) a5 = Dot4(a5, x5[k], v0, v1, v2, v3);
            if (m > 6) a6 = Dot4(a6, x6[k], v0, v1, v2, v3);
            if (m > 7) a7 = Dot4(a7, x7[k], v0, v1, v2, v3);
        }
        GemvReduceStore(y, b, a, a0, a1, a2, a3, a4, a5, a6, a7);
    }

    /// <summary>GEMV with scalar loads, any In and alignment; otherwise as <see cref="GemvVec4Kernel"/>.</summary>
    private static void GemvScalarKernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, GemvArgs a)
    {
        int t = Group.IdxX, gs = Group.DimX, m = a.M, n = a.In;
        int j0 = Grid.IdxX * GemvRowsPerGroup;
        var w0 = Row(w, j0, a.Out, n);
        var w1 = Row(w, j0 + 1, a.Out, n);
        var w2 = Row(w, j0 + 2, a.Out, n);
        var w3 = Row(w, j0 + 3, a.Out, n);
        var x0 = Row(x, 0, m, n);
        var x1 = Row(x, 1, m, n);
        var x2 = Row(x, 2, m, n);
        var x3 = Row(x, 3, m, n);
        var x4 = Row(x, 4, m, n);
        var x5 = Row(x, 5, m, n);
        var x6 = Row(x, 6, m, n);
        var x7 = Row(x, 7, m, n);
        Rows4 a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int k = t; k < n; k += gs)
        {
            float v0 = w0[k], v1 = w1[k], v2 = w2[k], v3 = w3[k];
            a0 = Dot1(a0, x0[k], v0, v1, v2, v3);
            if (m > 1) a1 = Dot1(a1, x1[k], v0, v1, v2, v3);
            if (m > 2) a2 = Dot1(a2, x2[k], v0, v1, v2, v3);
            if (m > 3) a3 = Dot1(a3, x3[k], v0, v1, v2, v3);
            if (m > 4) a4 = Dot1(a4, x4[k], v0, v1, v2, v3);
            if (m > 5) a5 = Dot1(a5, x5[k], v0, v1, v2, v3);
            if (m > 6) a6 = Dot1(a6, x6[k], v0, v1, v2, v3);
            if (m > 7) a7 = Dot1(a7, x7[k], v0, v1, v2, v3);
        }
        GemvReduceStore(y, b, a, a0, a1, a2, a3, a4, a5, a6, a7);
    }

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
