using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Element-wise activations, softmax over rows, dropout (identity at inference; train mode is Dropout.cs).
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

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

    /// <summary>
    /// dx = y > 0 ? dy : 0 from the ReLU output y (overwrites dx; dx may be dy). Fastest host version.
    /// </summary>
    /// <remarks>PyTorch's threshold_backward rule, y &lt;= 0 ? 0 : dy: the same for every number; a NaN
    /// output (a NaN input passes the forward) passes its gradient.</remarks>
    public static void ReluBackwardHost(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y) => ReluBackwardHost_V2Simd(dx, dy, y);

    /// <summary>Version 2: 8 lanes at a time, chunks in parallel for big tensors; same rule as V1.</summary>
    public static unsafe void ReluBackwardHost_V2Simd(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y)
    {
        Check.Length("dx", dx.Length, y.Length, "relu backward");
        Check.Length("dy", dy.Length, y.Length, "relu backward");
        const int Chunk = 1 << 16;
        fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* py = y)
        {
            nint dxp = (nint)pdx, dyp = (nint)pdy, yp = (nint)py;
            int n = y.Length, chunks = (n + Chunk - 1) / Chunk;
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
            void Run(int ch)
            {
                float* o = (float*)dxp, g = (float*)dyp, yy = (float*)yp;
                int i = ch * Chunk, end = Math.Min(n, i + Chunk);
                var z = System.Runtime.Intrinsics.Vector256<float>.Zero;
                for (; i + 8 <= end; i += 8)
                {
                    var yv = System.Runtime.Intrinsics.Vector256.Load(yy + i);
                    var gv = System.Runtime.Intrinsics.Vector256.Load(g + i);
                    System.Runtime.Intrinsics.Vector256.Store(
                        System.Runtime.Intrinsics.Vector256.ConditionalSelect(System.Runtime.Intrinsics.Vector256.LessThanOrEqual(yv, z), z, gv), o + i);
                }
                for (; i < end; i++) o[i] = yy[i] <= 0f ? 0f : g[i];
            }
            if (chunks <= 2) for (int ch = 0; ch < chunks; ch++) Run(ch);
            else Parallel.For(0, chunks, Run);
        }
    }

    /// <summary>Version 1: one element at a time. The specification.</summary>
    public static void ReluBackwardHost_V1Naive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y)
    {
        Check.Length("dx", dx.Length, y.Length, "relu backward");
        Check.Length("dy", dy.Length, y.Length, "relu backward");
        for (int i = 0; i < y.Length; i++) dx[i] = y[i] <= 0f ? 0f : dy[i];
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

    /// <summary>
    /// Softmax along the middle axis of x viewed as (outer, axis, inner): y[o, :, j] = softmax(x[o, :, j]),
    /// max-subtracted, sums in double. inner = 1 is <see cref="SoftmaxHost"/>; otherwise each outer slab is walked
    /// row by row along the axis so that the inner columns are read contiguously. Outer slabs run in parallel.
    /// </summary>
    public static void SoftmaxAxisHost(Span<float> y, ReadOnlySpan<float> x, int outer, int axis, int inner)
    {
        var shape = (outer, axis, inner);
        Check.Length("y", y.Length, (long)outer * axis * inner, shape);
        Check.Length("x", x.Length, (long)outer * axis * inner, shape);
        if (inner == 1) { SoftmaxHost(y, x, outer, axis); return; }
        unsafe
        {
            fixed (float* py = y) fixed (float* px = x)
            {
                nint yp = (nint)py, xp = (nint)px;
                void Slab(int o)
                {
                    long slab = (long)axis * inner, start = o * slab;
                    var xs = new ReadOnlySpan<float>((float*)xp + start, (int)slab);
                    var ys = new Span<float>((float*)yp + start, (int)slab);
                    var m = new float[inner];
                    var sum = new double[inner];
                    m.AsSpan().Fill(float.NegativeInfinity);
                    for (int a = 0; a < axis; a++)
                        for (int j = 0; j < inner; j++) m[j] = MathF.Max(m[j], xs[a * inner + j]);
                    for (int a = 0; a < axis; a++)
                        for (int j = 0; j < inner; j++)
                        {
                            float e = MathF.Exp(xs[a * inner + j] - m[j]);
                            ys[a * inner + j] = e;
                            sum[j] += e;
                        }
                    for (int j = 0; j < inner; j++) m[j] = (float)(1.0 / sum[j]);
                    for (int a = 0; a < axis; a++)
                        for (int j = 0; j < inner; j++) ys[a * inner + j] *= m[j];
                }
                if ((long)outer * axis * inner < 1 << 15) for (int o = 0; o < outer; o++) Slab(o);
                else Parallel.For(0, outer, Slab);
            }
        }
    }

    /// <summary>y = min(max(x, lo), hi) (ONNX Clip: hi everywhere when lo &gt; hi); NaN passes; y may be x.</summary>
    public static void ClipHost(Span<float> y, ReadOnlySpan<float> x, float lo, float hi)
        => Unary(y, x, new ClipF(lo, hi), "clip");

    /// <summary>y = x &lt; 0 ? alpha·x : x (ONNX LeakyRelu); y may be x.</summary>
    public static void LeakyReluHost(Span<float> y, ReadOnlySpan<float> x, float alpha)
        => Unary(y, x, new LeakyReluF(alpha), "leaky relu");

    interface IUnaryF
    {
        float Apply(float v);
        System.Numerics.Vector<float> Apply(System.Numerics.Vector<float> v);
    }

    readonly struct ClipF(float lo, float hi) : IUnaryF
    {
        public float Apply(float v)
        {
            v = v < lo ? lo : v;
            return v > hi ? hi : v;
        }
        public System.Numerics.Vector<float> Apply(System.Numerics.Vector<float> v)
        {
            var l = new System.Numerics.Vector<float>(lo);
            var h = new System.Numerics.Vector<float>(hi);
            v = System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.LessThan(v, l), l, v);
            return System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.GreaterThan(v, h), h, v);
        }
    }

    readonly struct LeakyReluF(float alpha) : IUnaryF
    {
        public float Apply(float v) => v < 0f ? alpha * v : v;
        public System.Numerics.Vector<float> Apply(System.Numerics.Vector<float> v)
            => System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.LessThan(v, System.Numerics.Vector<float>.Zero), v * alpha, v);
    }

    /// <summary>y[i] = f(x[i]), Vector&lt;float&gt; lanes at a time, chunks of 64K in parallel.</summary>
    static unsafe void Unary<TOp>(Span<float> y, ReadOnlySpan<float> x, TOp op, string name) where TOp : struct, IUnaryF
    {
        Check.Length("y", y.Length, x.Length, name);
        const int Chunk = 1 << 16;
        fixed (float* py = y) fixed (float* px = x)
        {
            nint yp = (nint)py, xp = (nint)px;
            int n = x.Length, chunks = (n + Chunk - 1) / Chunk;
            void Run(int c)
            {
                int i = c * Chunk, end = Math.Min(n, i + Chunk), w = System.Numerics.Vector<float>.Count;
                var xs = new ReadOnlySpan<float>((float*)xp, n);
                var ys = new Span<float>((float*)yp, n);
                for (; i + w <= end; i += w) op.Apply(new System.Numerics.Vector<float>(xs[i..])).CopyTo(ys[i..]);
                for (; i < end; i++) ys[i] = op.Apply(xs[i]);
            }
            if (chunks <= 2) for (int c = 0; c < chunks; c++) Run(c);
            else Parallel.For(0, chunks, Run);
        }
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// ReLU and row-wise softmax on an ILGPU accelerator. Kernels are compiled once in the constructor; launches
/// go to the default stream and are not synchronised.
/// </summary>
public sealed class ActivationsGpu
{
    // Shared-memory size of the softmax reduction: the largest group size it launches.
    private const int MaxSoftmaxGroup = 256;

    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>> _relu;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _softmax;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _reluBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _softmaxStrided;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, float, float> _clip;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, float> _leakyRelu;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>> _reluVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _reluBackwardVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, float, float> _clipVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, float> _leakyReluVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, FastDivmod> _softmaxStrided32;

    /// <summary>
    /// Forces the general kernels (64-bit indices, scalar loads) that tensors of 2^31 elements or more and views not on
    /// a 16-byte boundary take, so tests cover them on small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public ActivationsGpu(Accelerator accelerator)
    {
        _reluVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>>(ReluVec4Kernel);
        _reluBackwardVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>>(ReluBackwardVec4Kernel);
        _clipVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, float, float>(ClipVec4Kernel);
        _leakyReluVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, float>(LeakyReluVec4Kernel);
        _softmaxStrided32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, FastDivmod>(SoftmaxStrided32Kernel);
        _acc = accelerator;
        _relu = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>>(ReluKernel);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(SoftmaxKernel);
        _reluBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>>(ReluBackwardKernel);
        _softmaxStrided = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(SoftmaxStridedKernel);
        _clip = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, float, float>(ClipKernel);
        _leakyRelu = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, float>(LeakyReluKernel);
    }

    /// <summary>dx = y > 0 ? dy : 0 from the ReLU output y (overwrites dx; dx may be dy); same rule as <see cref="Activations.ReluBackwardHost"/>.</summary>
    public void ReluBackward(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> y)
    {
        Check.Length("dx", dx.Length, y.Length, "relu backward");
        Check.Length("dy", dy.Length, y.Length, "relu backward");
        if (y.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Vec4(dx, dy, y)) _reluBackwardVec4(Accelerators.GridStride(_acc, (y.Length + 3) / 4, gs), dx, dy, y);
        else _reluBackward(Accelerators.GridStride(_acc, y.Length, gs), dx, dy, y);
    }

    /// <summary>y = max(x, 0); y and x may be the same view. NaN stays NaN, as on the host.</summary>
    public void Relu(ArrayView<float> y, ArrayView<float> x)
    {
        Check.Length("y", y.Length, x.Length, "relu");
        if (x.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Vec4(y, x, x)) _reluVec4(Accelerators.GridStride(_acc, (x.Length + 3) / 4, gs), y, x);
        else _relu(Accelerators.GridStride(_acc, x.Length, gs), y, x);
    }

    /// <summary>Row-wise softmax of x (rows, cols), max-subtracted; one group per row; y and x may be the same view.</summary>
    public void Softmax(ArrayView<float> y, ArrayView<float> x, int rows, int cols)
    {
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"softmax: rows and cols must be positive, got {(rows, cols)}");
        Check.Length("y", y.Length, (long)rows * cols, (rows, cols));
        Check.Length("x", x.Length, (long)rows * cols, (rows, cols));
        // On ILGPU's CPU accelerator every thread is an OS thread and a barrier costs milliseconds; the tree
        // reduction is the same code for any power-of-two group, so a warp-sized group keeps it fast there.
        int gs = Accelerators.GroupSize(_acc, _acc.AcceleratorType == AcceleratorType.CPU ? 32 : MaxSoftmaxGroup);
        _softmax(new KernelConfig(rows, gs), y, x, rows, cols);
    }

    /// <summary>Softmax along the middle axis of (outer, axis, inner), as <see cref="Activations.SoftmaxAxisHost"/>:
    /// inner = 1 is the row kernel; otherwise one thread per (outer, inner) column, consecutive threads on consecutive columns.</summary>
    public void SoftmaxAxis(ArrayView<float> y, ArrayView<float> x, int outer, int axis, int inner)
    {
        if (outer <= 0 || axis <= 0 || inner <= 0) throw new ArgumentException($"softmax: sizes must be positive, got {(outer, axis, inner)}");
        if (inner == 1) { Softmax(y, x, outer, axis); return; }
        Check.Length("y", y.Length, (long)outer * axis * inner, (outer, axis, inner));
        Check.Length("x", x.Length, (long)outer * axis * inner, (outer, axis, inner));
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && KernelIndex.Fits32(y.Length))
            _softmaxStrided32(Accelerators.GridStride(_acc, (long)outer * inner, gs), y, x, outer, axis, new FastDivmod(inner));
        else _softmaxStrided(Accelerators.GridStride(_acc, (long)outer * inner, gs), y, x, outer, axis, inner);
    }

    /// <summary>y = min(max(x, lo), hi), as <see cref="Activations.ClipHost"/>.</summary>
    public void Clip(ArrayView<float> y, ArrayView<float> x, float lo, float hi)
    {
        Check.Length("y", y.Length, x.Length, "clip");
        if (x.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Vec4(y, x, x)) _clipVec4(Accelerators.GridStride(_acc, (x.Length + 3) / 4, gs), y, x, lo, hi);
        else _clip(Accelerators.GridStride(_acc, x.Length, gs), y, x, lo, hi);
    }

    /// <summary>y = x &lt; 0 ? alpha·x : x, as <see cref="Activations.LeakyReluHost"/>.</summary>
    public void LeakyRelu(ArrayView<float> y, ArrayView<float> x, float alpha)
    {
        Check.Length("y", y.Length, x.Length, "leaky relu");
        if (x.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Vec4(y, x, x)) _leakyReluVec4(Accelerators.GridStride(_acc, (x.Length + 3) / 4, gs), y, x, alpha);
        else _leakyRelu(Accelerators.GridStride(_acc, x.Length, gs), y, x, alpha);
    }

    /// <summary>Whether the 16-byte-vector, 32-bit-index kernels can take these views (of one length).</summary>
    private bool Vec4(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
        => !UseGeneralKernels && KernelIndex.Fits32(a.Length) && KernelIndex.Aligned16(a) && KernelIndex.Aligned16(b) && KernelIndex.Aligned16(c);

    /// <summary>
    /// As <see cref="SoftmaxStridedKernel"/> with 32-bit indices (tensors under 2^31 elements) and the column split into
    /// (outer, inner) by a multiply-shift instead of a 64-bit division.
    /// </summary>
    private static void SoftmaxStrided32Kernel(ArrayView<float> y, ArrayView<float> x, int outer, int axis, FastDivmod inner)
    {
        int stride = Grid.DimX * Group.DimX, columns = outer * inner.Divisor, step = inner.Divisor;
        for (int c = Grid.GlobalIndex.X; c < columns; c += stride)
        {
            int o = inner.DivRem(c, out int j), start = o * axis * step + j;
            float m = float.NegativeInfinity;
            for (int a = 0, i = start; a < axis; a++, i += step) m = MathF.Max(m, x[i]);
            float sum = 0f;
            for (int a = 0, i = start; a < axis; a++, i += step)
            {
                float e = MathF.Exp(x[i] - m);
                y[i] = e;
                sum += e;
            }
            float inv = 1f / sum;
            for (int a = 0, i = start; a < axis; a++, i += step) y[i] *= inv;
        }
    }

    // The Vec4 kernels: the first Length / 4 float4s grid-stride with 32-bit indices and 16-byte loads and stores
    // (the launcher checked that the length is under 2^31 and every view starts on a 16-byte boundary); the last
    // Length % 4 elements go to the first threads of the grid. Same arithmetic per element as the general kernels.

    private static float Relu1(float v) => v < 0f ? 0f : v;

    private static void ReluVec4Kernel(ArrayView<float> y, ArrayView<float> x)
    {
        int n = (int)x.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var x4 = x.Cast<Float4>();
        var y4 = y.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            var v = x4[i];
            y4[i] = new Float4(Relu1(v.X), Relu1(v.Y), Relu1(v.Z), Relu1(v.W));
        }
        int t = (n4 << 2) + g;
        if (t < n) y[t] = Relu1(x[t]);
    }

    private static float ReluGrad1(float dy, float y) => y <= 0f ? 0f : dy;

    private static void ReluBackwardVec4Kernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> y)
    {
        int n = (int)y.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var dx4 = dx.Cast<Float4>();
        var dy4 = dy.Cast<Float4>();
        var y4 = y.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            Float4 d = dy4[i], v = y4[i];
            dx4[i] = new Float4(ReluGrad1(d.X, v.X), ReluGrad1(d.Y, v.Y), ReluGrad1(d.Z, v.Z), ReluGrad1(d.W, v.W));
        }
        int t = (n4 << 2) + g;
        if (t < n) dx[t] = ReluGrad1(dy[t], y[t]);
    }

    private static float Clip1(float v, float lo, float hi)
    {
        v = v < lo ? lo : v;
        return v > hi ? hi : v;
    }

    private static void ClipVec4Kernel(ArrayView<float> y, ArrayView<float> x, float lo, float hi)
    {
        int n = (int)x.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var x4 = x.Cast<Float4>();
        var y4 = y.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            var v = x4[i];
            y4[i] = new Float4(Clip1(v.X, lo, hi), Clip1(v.Y, lo, hi), Clip1(v.Z, lo, hi), Clip1(v.W, lo, hi));
        }
        int t = (n4 << 2) + g;
        if (t < n) y[t] = Clip1(x[t], lo, hi);
    }

    private static float Leaky1(float v, float alpha) => v < 0f ? alpha * v : v;

    private static void LeakyReluVec4Kernel(ArrayView<float> y, ArrayView<float> x, float alpha)
    {
        int n = (int)x.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var x4 = x.Cast<Float4>();
        var y4 = y.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            var v = x4[i];
            y4[i] = new Float4(Leaky1(v.X, alpha), Leaky1(v.Y, alpha), Leaky1(v.Z, alpha), Leaky1(v.W, alpha));
        }
        int t = (n4 << 2) + g;
        if (t < n) y[t] = Leaky1(x[t], alpha);
    }

    private static void SoftmaxStridedKernel(ArrayView<float> y, ArrayView<float> x, int outer, int axis, int inner)
    {
        long stride = (long)Grid.DimX * Group.DimX, columns = (long)outer * inner;
        for (long c = Grid.GlobalIndex.X; c < columns; c += stride)
        {
            long o = c / inner, j = c - o * inner, start = o * axis * inner + j;
            float m = float.NegativeInfinity;
            for (int a = 0; a < axis; a++) m = MathF.Max(m, x[start + (long)a * inner]);
            float sum = 0f;
            for (int a = 0; a < axis; a++)
            {
                float e = MathF.Exp(x[start + (long)a * inner] - m);
                y[start + (long)a * inner] = e;
                sum += e;
            }
            float inv = 1f / sum;
            for (int a = 0; a < axis; a++) y[start + (long)a * inner] *= inv;
        }
    }

    private static void ClipKernel(ArrayView<float> y, ArrayView<float> x, float lo, float hi)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += stride)
        {
            float v = x[i];
            v = v < lo ? lo : v;
            y[i] = v > hi ? hi : v;
        }
    }

    private static void LeakyReluKernel(ArrayView<float> y, ArrayView<float> x, float alpha)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += stride)
        {
            float v = x[i];
            y[i] = v < 0f ? alpha * v : v;
        }
    }

    private static void ReluKernel(ArrayView<float> y, ArrayView<float> x)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < x.Length; i += stride)
        {
            float v = x[i];
            y[i] = v < 0f ? 0f : v;
        }
    }

    private static void ReluBackwardKernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> y)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride)
            dx[i] = y[i] <= 0f ? 0f : dy[i];
    }

    /// <summary>
    /// Group r handles row r: strided max, tree reduction in shared memory (group size a power of two), then
    /// exp(x - max) written to y with a strided sum, second reduction, and a scale by 1/sum.
    /// </summary>
    private static void SoftmaxKernel(ArrayView<float> y, ArrayView<float> x, int rows, int cols)
    {
        var red = SharedMemory.Allocate<float>(MaxSoftmaxGroup);
        int t = Group.IdxX, gs = Group.DimX;
        long row = (long)Grid.IdxX * cols;

        float m = float.NegativeInfinity;
        for (int j = t; j < cols; j += gs) m = MathF.Max(m, x[row + j]);
        m = GroupReduce.Max(red, m);

        float sum = 0f;
        for (int j = t; j < cols; j += gs)
        {
            float e = MathF.Exp(x[row + j] - m);
            y[row + j] = e;
            sum += e;
        }
        float inv = 1f / GroupReduce.Sum(red, sum);
        for (int j = t; j < cols; j += gs) y[row + j] *= inv;
    }
}
