using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Max pooling (any window, stride, asymmetric padding, dilation, ceil mode) and torchvision's adaptive average
// pooling, forward and backward; ONNX's AveragePool, forward only.
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin =====
public static partial class Pooling
{
    /// <summary>y (N, C, OH, OW) = max over each window of x (N, C, H, W); padding never wins. Fastest host version.</summary>
    public static void MaxForwardHost(Span<float> y, ReadOnlySpan<float> x, PoolShape s)
        => MaxForwardHost_V2Planes(y, x, s);

    /// <summary>
    /// Version 2: planes in parallel; the 2x2 stride-2 unpadded window (every VGG pool) gets a branch-light
    /// loop over row pairs, other windows the V1 loop per plane. Same NaN rule as V1 (a NaN in a window wins).
    /// </summary>
    public static unsafe void MaxForwardHost_V2Planes(Span<float> y, ReadOnlySpan<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int oh = s.OutH, ow = s.OutW, h = s.H, w = s.W;
        long planes = (long)s.N * s.C;
        if (planes == 0 || oh <= 0 || ow <= 0) return;
        bool hot = Is2x2Stride2Inside(s);
        fixed (float* py = y) fixed (float* px = x)
        {
            nint yp = (nint)py, xp = (nint)px;
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
            void Plane(long plane)
            {
                float* xi = (float*)xp + plane * h * w, yo = (float*)yp + plane * oh * ow;
                if (!hot)
                {
                    MaxPlane(new Span<float>(yo, oh * ow), new ReadOnlySpan<float>(xi, h * w), s);
                    return;
                }
                for (int oy = 0; oy < oh; oy++)
                {
                    float* r0 = xi + 2 * oy * w, r1 = r0 + w, yr = yo + oy * ow;
                    int ox = HostSimd.MaxPool2x2Row(yr, r0, r1, ow);
                    for (; ox < ow; ox++)
                    {
                        float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
                        float m = a;
                        if (b > m || float.IsNaN(b)) m = b;
                        if (c > m || float.IsNaN(c)) m = c;
                        if (d > m || float.IsNaN(d)) m = d;
                        yr[ox] = m;
                    }
                }
            }
            if (s.InputLength < 1 << 16) for (long p = 0; p < planes; p++) Plane(p);
            else Parallel.For(0L, planes, Plane);
        }
    }

    /// <summary>The 2x2 stride-2 window with no padding or dilation whose every window lies inside the input (so no
    /// end padding or ceil mode adds a window hanging past the last row or column): the fast paths' shape.</summary>
    internal static bool Is2x2Stride2Inside(PoolShape s)
        => s.KernelH == 2 && s.KernelW == 2 && s.StrideH == 2 && s.StrideW == 2 && s.PadH == 0 && s.PadW == 0
           && s.DilationH == 1 && s.DilationW == 1 && 2L * s.OutH <= s.H && 2L * s.OutW <= s.W;

    /// <summary>Version 1: plane by plane on one thread. The specification.</summary>
    public static void MaxForwardHost_V1Naive(Span<float> y, ReadOnlySpan<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int oh = s.OutH, ow = s.OutW;
        for (long plane = 0; plane < (long)s.N * s.C; plane++)
            MaxPlane(y.Slice((int)(plane * oh * ow), oh * ow), x.Slice((int)(plane * s.H * s.W), s.H * s.W), s);
    }

    /// <summary>V1's window loop for one plane (H, W) -> (OH, OW). The shape's fields are read into locals once, and a
    /// window that lies wholly inside the input (the interior of every padded map) is read without bounds checks.</summary>
    static unsafe void MaxPlane(Span<float> yo, ReadOnlySpan<float> xi, PoolShape s)
    {
        int oh = s.OutH, ow = s.OutW, h = s.H, w = s.W, kh = s.KernelH, kw = s.KernelW, sh = s.StrideH, sw = s.StrideW;
        int ph = s.PadH, pw = s.PadW, dh = s.DilationH, dw = s.DilationW;
        fixed (float* py = yo) fixed (float* px = xi)
            for (int oy = 0; oy < oh; oy++)
            {
                int iy0 = oy * sh - ph;
                bool rowsInside = iy0 >= 0 && iy0 + (kh - 1) * dh < h;
                for (int ox = 0; ox < ow; ox++)
                {
                    int ix0 = ox * sw - pw;
                    float m = float.NegativeInfinity;
                    if (rowsInside && ix0 >= 0 && ix0 + (kw - 1) * dw < w)
                    {
                        for (int r = 0; r < kh; r++)
                        {
                            float* row = px + (iy0 + r * dh) * w + ix0;
                            for (int q = 0; q < kw; q++)
                            {
                                float v = row[q * dw];
                                if (v > m || float.IsNaN(v)) m = v;
                            }
                        }
                    }
                    else
                        for (int r = 0; r < kh; r++)
                        {
                            int iy = iy0 + r * dh;
                            if ((uint)iy >= (uint)h) continue;
                            for (int q = 0; q < kw; q++)
                            {
                                int ix = ix0 + q * dw;
                                if ((uint)ix >= (uint)w) continue;
                                float v = px[iy * w + ix];
                                if (v > m || float.IsNaN(v)) m = v;
                            }
                        }
                    py[oy * ow + ox] = m;
                }
            }
    }

    /// <summary>
    /// Input range [start, end) that adaptive pooling's output cell <paramref name="i"/> of <paramref name="outSize"/>
    /// averages along an axis of <paramref name="size"/>: [floor(i·size/out), ceil((i+1)·size/out)), PyTorch's bins.
    /// The one definition the host twins and the ILGPU kernels share.
    /// </summary>
    public static (int Start, int End) AdaptiveBin(int i, int size, int outSize)
        => (i * size / outSize, ((i + 1) * size + outSize - 1) / outSize);

    /// <summary>
    /// torchvision's AdaptiveAvgPool2d: output cell (i, j) averages rows [floor(i*H/OH), ceil((i+1)*H/OH))
    /// and the same for columns. Identity when (H, W) == (OH, OW).
    /// </summary>
    public static void AdaptiveAvgForwardHost(Span<float> y, ReadOnlySpan<float> x, int n, int c, int h, int w, int oh, int ow)
    {
        Check.Length("y", y.Length, (long)n * c * oh * ow, (n, c, oh, ow));
        Check.Length("x", x.Length, (long)n * c * h * w, (n, c, h, w));
        for (long plane = 0; plane < (long)n * c; plane++)
        {
            var xi = x.Slice((int)(plane * h * w), h * w);
            var yo = y.Slice((int)(plane * oh * ow), oh * ow);
            for (int i = 0; i < oh; i++)
            {
                var (y0, y1) = Pooling.AdaptiveBin(i, h, oh);
                for (int j = 0; j < ow; j++)
                {
                    var (x0, x1) = Pooling.AdaptiveBin(j, w, ow);
                    float sum = 0f;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) sum += xi[iy * w + ix];
                    yo[i * ow + j] = sum / ((y1 - y0) * (x1 - x0));
                }
            }
        }
    }
    /// <summary>
    /// dx (N, C, H, W), overwritten: zero, then each dy (N, C, OH, OW) element added at the argmax of its window
    /// in x, re-derived from x as PyTorch's CPU max_pool2d_with_indices picks it (window scanned row-major, a value
    /// taken when val > max or val is NaN, so ties go to the first max and the last NaN wins; a window of -inf
    /// routes to its first in-bounds element). Overlapping windows add, in output order. Fastest host version.
    /// </summary>
    public static void MaxBackwardHost(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, PoolShape s)
        => MaxBackwardHost_V2Planes(dx, dy, x, s);

    /// <summary>
    /// Version 2: for the 2x2 stride-2 unpadded window (every VGG pool), each dx element written once (a window's
    /// argmax gets 0 + dy, its other three +0, the row or column no window covers 0: no clearing pass), 8 windows at
    /// a time, planes in parallel; other windows go to V1. Bit-identical to V1.
    /// </summary>
    public static unsafe void MaxBackwardHost_V2Planes(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("dx", dx.Length, s.InputLength, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        bool hot = Is2x2Stride2Inside(s);
        long planes = (long)s.N * s.C;
        int oh = s.OutH, ow = s.OutW, h = s.H, w = s.W;
        if (!hot || planes == 0 || oh <= 0 || ow <= 0) { MaxBackwardHost_V1Naive(dx, dy, x, s); return; }
        // Enough planes per task that VGG's small late pools (14x14 planes) are not all scheduling.
        long perTask = Math.Max(1, (1 << 16) / ((long)h * w)), tasks = (planes + perTask - 1) / perTask;
        fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* px = x)
        {
            nint dxp = (nint)pdx, dyp = (nint)pdy, xp = (nint)px;
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
            void Planes(long task)
            {
                for (long plane = task * perTask, end = Math.Min(planes, plane + perTask); plane < end; plane++)
                {
                    float* xi = (float*)xp + plane * h * w, di = (float*)dxp + plane * h * w, gi = (float*)dyp + plane * oh * ow;
                    for (int oy = 0; oy < oh; oy++)
                    {
                        float* r0 = xi + 2 * oy * w, r1 = r0 + w, d0 = di + 2 * oy * w, d1 = d0 + w, g = gi + oy * ow;
                        int ox = HostSimd.MaxPool2x2BackwardRow(d0, d1, g, r0, r1, ow);
                        for (; ox < ow; ox++)
                        {
                            float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
                            float m = a;
                            int k = 0;
                            if (b > m || float.IsNaN(b)) { m = b; k = 1; }
                            if (c > m || float.IsNaN(c)) { m = c; k = 2; }
                            if (d > m || float.IsNaN(d)) k = 3;
                            float v = 0f + g[ox];
                            d0[2 * ox] = k == 0 ? v : 0f; d0[2 * ox + 1] = k == 1 ? v : 0f;
                            d1[2 * ox] = k == 2 ? v : 0f; d1[2 * ox + 1] = k == 3 ? v : 0f;
                        }
                        if ((w & 1) != 0) { d0[w - 1] = 0f; d1[w - 1] = 0f; }
                    }
                    if ((h & 1) != 0) new Span<float>(di + (h - 1) * w, w).Clear();
                }
            }
            if (tasks <= 1) Planes(0);
            else Parallel.For(0L, tasks, Planes);
        }
    }

    /// <summary>Version 1: clear each plane, then add each window's dy at its <see cref="MaxArg"/>; planes in parallel. The specification.</summary>
    public static void MaxBackwardHost_V1Naive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("dx", dx.Length, s.InputLength, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        long planes = (long)s.N * s.C;
        int oh = s.OutH, ow = s.OutW, hw = s.H * s.W;
        if (planes == 0 || oh <= 0 || ow <= 0) { dx.Clear(); return; }
        unsafe
        {
            fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* px = x)
            {
                nint dxp = (nint)pdx, dyp = (nint)pdy, xp = (nint)px;
                void Plane(long plane)
                {
                    var dxi = new Span<float>((float*)dxp + plane * hw, hw);
                    var dyi = new ReadOnlySpan<float>((float*)dyp + plane * oh * ow, oh * ow);
                    var xi = new ReadOnlySpan<float>((float*)xp + plane * hw, hw);
                    dxi.Clear();
                    for (int oy = 0; oy < oh; oy++)
                        for (int ox = 0; ox < ow; ox++)
                            if (MaxArg(xi, s, oy, ox) is var arg and >= 0) dxi[arg] += dyi[oy * ow + ox];
                }
                if (s.InputLength < 1 << 16) for (long p = 0; p < planes; p++) Plane(p);
                else Parallel.For(0L, planes, Plane);
            }
        }
    }

    /// <summary>Index in the plane (H, W) of window (oy, ox)'s max under PyTorch's rule (see <see cref="MaxBackwardHost"/>):
    /// the first in-bounds tap unless a later one is greater or NaN; -1 for a window wholly in the padding.</summary>
    internal static int MaxArg(ReadOnlySpan<float> xi, PoolShape s, int oy, int ox)
    {
        int y0 = oy * s.StrideH - s.PadH, x0 = ox * s.StrideW - s.PadW;
        int arg = -1;
        float m = float.NegativeInfinity;
        for (int r = 0; r < s.KernelH; r++)
        {
            int iy = y0 + r * s.DilationH;
            if ((uint)iy >= (uint)s.H) continue;
            for (int q = 0; q < s.KernelW; q++)
            {
                int ix = x0 + q * s.DilationW;
                if ((uint)ix >= (uint)s.W) continue;
                float v = xi[iy * s.W + ix];
                if (arg < 0 || v > m || float.IsNaN(v)) { m = v; arg = iy * s.W + ix; }
            }
        }
        return arg;
    }

    /// <summary>
    /// One axis of an average-pooling window, PyTorch's avg_pool2d rule with ONNX's separate end pad: the window
    /// starts at o·stride - pad and is clipped to the padded input [-pad, size + padEnd) (a ceil-mode window hanging
    /// past that border is shortened), giving <c>Padded</c>, the count_include_pad divisor's factor; then clipped to the
    /// input itself, giving [Start, End), the elements summed and the other divisor's factor.
    /// </summary>
    public static (int Start, int End, int Padded) AvgWindow(int o, int stride, int pad, int padEnd, int kernel, int size)
    {
        int start = o * stride - pad;
        int end = Math.Min(start + kernel, size + padEnd);
        return (Math.Max(start, 0), Math.Min(end, size), end - start);
    }

    /// <summary>
    /// ONNX AveragePool / PyTorch avg_pool2d: y (N, C, OH, OW) = the sum of each window's in-bounds elements of x
    /// (N, C, H, W) divided by the window's area inside the padded input when <paramref name="countIncludePad"/>, by
    /// the number of in-bounds elements otherwise (see <see cref="AvgWindow"/>); a window with nothing to divide by
    /// gives 0. No dilation. Planes in parallel. The specification and the host backend.
    /// </summary>
    public static unsafe void AvgForwardHost(Span<float> y, ReadOnlySpan<float> x, PoolShape s, bool countIncludePad)
    {
        s.Validate();
        if (s.DilationH != 1 || s.DilationW != 1) throw new ArgumentException($"average pool: dilation is not supported, got {s}");
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int oh = s.OutH, ow = s.OutW, hw = s.H * s.W;
        fixed (float* py = y) fixed (float* px = x)
        {
            nint yp = (nint)py, xp = (nint)px;
            void Plane(long plane)
            {
                float* xi = (float*)xp + plane * hw, yo = (float*)yp + plane * oh * ow;
                for (int oy = 0; oy < oh; oy++)
                {
                    var (ys, ye, ph) = AvgWindow(oy, s.StrideH, s.PadH, s.PadEndH, s.KernelH, s.H);
                    for (int ox = 0; ox < ow; ox++)
                    {
                        var (xs, xe, pw) = AvgWindow(ox, s.StrideW, s.PadW, s.PadEndW, s.KernelW, s.W);
                        float sum = 0f;
                        for (int iy = ys; iy < ye; iy++)
                            for (int ix = xs; ix < xe; ix++) sum += xi[iy * s.W + ix];
                        int divisor = countIncludePad ? ph * pw : Math.Max(ye - ys, 0) * Math.Max(xe - xs, 0);
                        yo[oy * ow + ox] = divisor > 0 ? sum / divisor : 0f;
                    }
                }
            }
            long planes = (long)s.N * s.C;
            if (s.InputLength < 1 << 16) for (long p = 0; p < planes; p++) Plane(p);
            else Parallel.For(0L, planes, Plane);
        }
    }

    /// <summary>
    /// dx (N, C, H, W), overwritten, of <see cref="AdaptiveAvgForwardHost"/>: each dy (N, C, OH, OW) element spread
    /// evenly over its bin, bins overlapping when sizes do not divide. As PyTorch's CPU kernel: dy / binH / binW.
    /// </summary>
    public static void AdaptiveAvgBackwardHost(Span<float> dx, ReadOnlySpan<float> dy, int n, int c, int h, int w, int oh, int ow)
    {
        Check.Length("dx", dx.Length, (long)n * c * h * w, (n, c, h, w));
        Check.Length("dy", dy.Length, (long)n * c * oh * ow, (n, c, oh, ow));
        dx.Clear();
        for (long plane = 0; plane < (long)n * c; plane++)
        {
            var dxi = dx.Slice((int)(plane * h * w), h * w);
            var dyi = dy.Slice((int)(plane * oh * ow), oh * ow);
            for (int i = 0; i < oh; i++)
            {
                var (y0, y1) = Pooling.AdaptiveBin(i, h, oh);
                for (int j = 0; j < ow; j++)
                {
                    var (x0, x1) = Pooling.AdaptiveBin(j, w, ow);
                    float g = dyi[i * ow + j] / (y1 - y0) / (x1 - x0);
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) dxi[iy * w + ix] += g;
                }
            }
        }
    }
}





// ===== ILGPU kernels =====

/// <summary>Kernel arguments of max and average pooling: the shape with its end pads and output size resolved on the host.</summary>
internal readonly struct PoolArgs
{
    public readonly int N, C, H, W, KernelH, KernelW, StrideH, StrideW, PadH, PadW, PadEndH, PadEndW, DilationH, DilationW, OutH, OutW;
    public readonly int CountIncludePad;
    public readonly long InputLength, OutputLength;

    public PoolArgs(PoolShape s, bool countIncludePad = false)
    {
        N = s.N; C = s.C; H = s.H; W = s.W; KernelH = s.KernelH; KernelW = s.KernelW; StrideH = s.StrideH; StrideW = s.StrideW;
        PadH = s.PadH; PadW = s.PadW; PadEndH = s.PadEndH; PadEndW = s.PadEndW; DilationH = s.DilationH; DilationW = s.DilationW;
        OutH = s.OutH; OutW = s.OutW; CountIncludePad = countIncludePad ? 1 : 0;
        InputLength = s.InputLength; OutputLength = s.OutputLength;
    }
}

/// <summary>Kernel arguments of adaptive average pooling: (N*C) planes of (H, W) to (OH, OW).</summary>
internal readonly struct AdaptiveAvgArgs
{
    public readonly long Planes;
    public readonly int H, W, OutH, OutW;
    public AdaptiveAvgArgs(long planes, int h, int w, int oh, int ow) { Planes = planes; H = h; W = w; OutH = oh; OutW = ow; }
}

/// <summary>
/// Divisors of the 32-bit pooling kernels (input and output under 2^31 elements): a flat output index splits into
/// (plane, oy, ox) and a flat input index into (plane, iy, ix) with multiply-shifts (<see cref="FastDivmod"/>) instead
/// of a call of the 64-bit division routine and an inlined 32-bit division.
/// </summary>
internal readonly struct PoolDivs
{
    public readonly FastDivmod OutPlane, OutW, OutH, InPlane, InW, StrideH, StrideW;

    /// <summary>Divisors of a plane (H, W) pooled to (OH, OW) with the given strides (adaptive pooling: 1, 1).</summary>
    public PoolDivs(int h, int w, int oh, int ow, int strideH = 1, int strideW = 1)
    {
        OutPlane = new FastDivmod(Math.Max(1, oh * ow)); OutW = new FastDivmod(Math.Max(1, ow)); OutH = new FastDivmod(Math.Max(1, oh));
        InPlane = new FastDivmod(Math.Max(1, h * w)); InW = new FastDivmod(Math.Max(1, w));
        StrideH = new FastDivmod(strideH); StrideW = new FastDivmod(strideW);
    }

    public PoolDivs(PoolShape s) : this(s.H, s.W, s.OutH, s.OutW, s.StrideH, s.StrideW) { }

    /// <summary><see cref="Pooling.AdaptiveBin"/> with the divisions by the output size as multiply-shifts.</summary>
    public static (int Start, int End) AdaptiveBin(int i, int size, FastDivmod outSize)
        => (outSize.Div(i * size), outSize.Div((i + 1) * size + outSize.Divisor - 1));

    public static bool Fit(long inputLength, long outputLength) => KernelIndex.Fits32(inputLength) && KernelIndex.Fits32(outputLength);
}

/// <summary>
/// Max pooling and adaptive average pooling on an ILGPU accelerator, one thread per output element (memory-bound:
/// consecutive threads write consecutive outputs and read overlapping, mostly contiguous windows).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class PoolingGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, PoolArgs> _max;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, PoolArgs> _avg;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs> _adaptiveAvg;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolArgs> _maxBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs> _adaptiveAvgBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs> _max32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<Float2>, PoolArgs, PoolDivs> _max2x2;
    private readonly Action<KernelConfig, ArrayView<Float2>, ArrayView<float>, ArrayView<Float2>, PoolArgs, PoolDivs> _maxBackward2x2;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs> _avg32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs, PoolDivs> _adaptiveAvg32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs> _maxBackward32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs, PoolDivs> _adaptiveAvgBackward32;

    /// <summary>
    /// Forces the general kernels (64-bit indices) that tensors of 2^31 elements or more take, so tests cover them on
    /// small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public PoolingGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _max32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs>(Max32Kernel);
        _max2x2 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<Float2>, PoolArgs, PoolDivs>(Max2x2Vec2Kernel);
        _maxBackward2x2 = accelerator.LoadStreamKernel<ArrayView<Float2>, ArrayView<float>, ArrayView<Float2>, PoolArgs, PoolDivs>(MaxBackward2x2Vec2Kernel);
        _avg32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs>(Avg32Kernel);
        _adaptiveAvg32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs, PoolDivs>(AdaptiveAvg32Kernel);
        _maxBackward32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolArgs, PoolDivs>(MaxBackward32Kernel);
        _adaptiveAvgBackward32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs, PoolDivs>(AdaptiveAvgBackward32Kernel);
        _max = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, PoolArgs>(MaxKernel);
        _avg = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, PoolArgs>(AvgKernel);
        _adaptiveAvg = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs>(AdaptiveAvgKernel);
        _maxBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolArgs>(MaxBackwardKernel);
        _adaptiveAvgBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, AdaptiveAvgArgs>(AdaptiveAvgBackwardKernel);
    }

    /// <summary>y (N, C, OH, OW) = max over each window of x (N, C, H, W); padding never wins, NaN propagates.</summary>
    public void MaxForward(ArrayView<float> y, ArrayView<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Use2x2Vec2(s, x, x))
            _max2x2(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x.Cast<Float2>(), new PoolArgs(s), new PoolDivs(s));
        else if (Use32(s.InputLength, s.OutputLength))
            _max32(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, new PoolArgs(s), new PoolDivs(s));
        else _max(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, new PoolArgs(s));
    }

    /// <summary>ONNX AveragePool: y (N, C, OH, OW) from x (N, C, H, W), windows and divisors as in <see cref="Pooling.AvgForwardHost"/>.</summary>
    public void AvgForward(ArrayView<float> y, ArrayView<float> x, PoolShape s, bool countIncludePad)
    {
        s.Validate();
        if (s.DilationH != 1 || s.DilationW != 1) throw new ArgumentException($"average pool: dilation is not supported, got {s}");
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Use32(s.InputLength, s.OutputLength))
            _avg32(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, new PoolArgs(s, countIncludePad), new PoolDivs(s));
        else _avg(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, new PoolArgs(s, countIncludePad));
    }

    /// <summary>torchvision's AdaptiveAvgPool2d: y (N, C, OH, OW) from x (N, C, H, W), bins as in <see cref="Pooling.AdaptiveAvgForwardHost"/>.</summary>
    public void AdaptiveAvgForward(ArrayView<float> y, ArrayView<float> x, int n, int c, int h, int w, int oh, int ow)
    {
        if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || oh <= 0 || ow <= 0)
            throw new ArgumentException($"adaptive avgpool: sizes must be positive, got {(n, c, h, w)} -> {(oh, ow)}");
        Check.Length("y", y.Length, (long)n * c * oh * ow, (n, c, oh, ow));
        Check.Length("x", x.Length, (long)n * c * h * w, (n, c, h, w));
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Use32(x.Length, y.Length) && AdaptiveFits32(h, w, oh, ow))
            _adaptiveAvg32(Accelerators.GridStride(_acc, (long)n * c * oh * ow, gs), y, x,
                new AdaptiveAvgArgs((long)n * c, h, w, oh, ow), new PoolDivs(h, w, oh, ow));
        else _adaptiveAvg(Accelerators.GridStride(_acc, (long)n * c * oh * ow, gs), y, x,
            new AdaptiveAvgArgs((long)n * c, h, w, oh, ow));
    }

    /// <summary>dx (N, C, H, W), overwritten, of max pooling; same routing, tie rule and summation order as <see cref="Pooling.MaxBackwardHost"/>.</summary>
    public void MaxBackward(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> x, PoolShape s)
    {
        s.Validate();
        Check.Length("dx", dx.Length, s.InputLength, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Use2x2Vec2(s, x, dx))
            _maxBackward2x2(Accelerators.GridStride(_acc, s.OutputLength, gs), dx.Cast<Float2>(), dy, x.Cast<Float2>(), new PoolArgs(s), new PoolDivs(s));
        else if (Use32(s.InputLength, s.OutputLength))
            _maxBackward32(Accelerators.GridStride(_acc, s.InputLength, gs), dx, dy, x, new PoolArgs(s), new PoolDivs(s));
        else _maxBackward(Accelerators.GridStride(_acc, s.InputLength, gs), dx, dy, x, new PoolArgs(s));
    }

    /// <summary>dx (N, C, H, W), overwritten, of adaptive average pooling; as <see cref="Pooling.AdaptiveAvgBackwardHost"/>.</summary>
    public void AdaptiveAvgBackward(ArrayView<float> dx, ArrayView<float> dy, int n, int c, int h, int w, int oh, int ow)
    {
        if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || oh <= 0 || ow <= 0)
            throw new ArgumentException($"adaptive avgpool backward: sizes must be positive, got {(n, c, h, w)} -> {(oh, ow)}");
        Check.Length("dx", dx.Length, (long)n * c * h * w, (n, c, h, w));
        Check.Length("dy", dy.Length, (long)n * c * oh * ow, (n, c, oh, ow));
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Use32(dx.Length, dy.Length) && AdaptiveFits32(h, w, oh, ow))
            _adaptiveAvgBackward32(Accelerators.GridStride(_acc, (long)n * c * h * w, gs), dx, dy,
                new AdaptiveAvgArgs((long)n * c, h, w, oh, ow), new PoolDivs(h, w, oh, ow));
        else _adaptiveAvgBackward(Accelerators.GridStride(_acc, (long)n * c * h * w, gs), dx, dy,
            new AdaptiveAvgArgs((long)n * c, h, w, oh, ow));
    }

    private bool Use32(long inputLength, long outputLength) => !UseGeneralKernels && PoolDivs.Fit(inputLength, outputLength);

    /// <summary>
    /// VGG's pool: a 2x2 stride-2 window without padding over even H and W (every input element in exactly one window),
    /// views on an 8-byte boundary, so each window is two 8-byte loads (and its gradient two 8-byte stores).
    /// </summary>
    private bool Use2x2Vec2(PoolShape s, ArrayView<float> a, ArrayView<float> b)
        => Use32(s.InputLength, s.OutputLength) && Pooling.Is2x2Stride2Inside(s) && s.H % 2 == 0 && s.W % 2 == 0
           && ((IContiguousArrayView)a).IndexInBytes % 8 == 0 && ((IContiguousArrayView)b).IndexInBytes % 8 == 0;

    /// <summary>
    /// Max pooling 2x2 stride 2 (<see cref="Use2x2Vec2"/>): one thread per output, the window's two rows read as float2
    /// (x viewed as float2: row pair (2·oy, 2·oy+1) of plane p starts at float2 (p·H·W + 2·oy·W) / 2 + ox). Same
    /// comparisons in the same order as <see cref="Max32Kernel"/>.
    /// </summary>
    private static void Max2x2Vec2Kernel(ArrayView<float> y, ArrayView<Float2> x, PoolArgs s, PoolDivs d)
    {
        int total = (int)s.OutputLength, halfW = s.W >> 1, halfPlane = (s.H * s.W) >> 1, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.OutPlane.DivRem(e, out int pix);
            int oy = d.OutW.DivRem(pix, out int ox);
            int top = plane * halfPlane + 2 * oy * halfW + ox;
            Float2 r0 = x[top], r1 = x[top + halfW];
            float m = float.NegativeInfinity;
            if (r0.X > m || float.IsNaN(r0.X)) m = r0.X;
            if (r0.Y > m || float.IsNaN(r0.Y)) m = r0.Y;
            if (r1.X > m || float.IsNaN(r1.X)) m = r1.X;
            if (r1.Y > m || float.IsNaN(r1.Y)) m = r1.Y;
            y[e] = m;
        }
    }

    /// <summary>
    /// Max pooling 2x2 stride 2 backward (<see cref="Use2x2Vec2"/>): one thread per window instead of per input
    /// element, since each input element lies in exactly one window. It picks the argmax by
    /// <see cref="WindowArgMax"/>'s rule (first tap, then a later one when greater or NaN) and writes the window's four
    /// gradients as two float2 stores: 0 + dy at the argmax (as the general kernel's sum from 0), 0 elsewhere.
    /// </summary>
    private static void MaxBackward2x2Vec2Kernel(ArrayView<Float2> dx, ArrayView<float> dy, ArrayView<Float2> x, PoolArgs s, PoolDivs d)
    {
        int total = (int)s.OutputLength, halfW = s.W >> 1, halfPlane = (s.H * s.W) >> 1, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.OutPlane.DivRem(e, out int pix);
            int oy = d.OutW.DivRem(pix, out int ox);
            int top = plane * halfPlane + 2 * oy * halfW + ox;
            Float2 r0 = x[top], r1 = x[top + halfW];
            float m = r0.X;
            int k = 0;
            if (r0.Y > m || float.IsNaN(r0.Y)) { m = r0.Y; k = 1; }
            if (r1.X > m || float.IsNaN(r1.X)) { m = r1.X; k = 2; }
            if (r1.Y > m || float.IsNaN(r1.Y)) k = 3;
            float g = 0f + dy[e];
            dx[top] = new Float2(k == 0 ? g : 0f, k == 1 ? g : 0f);
            dx[top + halfW] = new Float2(k == 2 ? g : 0f, k == 3 ? g : 0f);
        }
    }

    /// <summary>Whether the adaptive bins' numerators, up to (OH + 1)·H + OH, fit the 32-bit multiply-shift.</summary>
    private static bool AdaptiveFits32(int h, int w, int oh, int ow)
        => KernelIndex.Fits32((long)(oh + 1) * h + oh) && KernelIndex.Fits32((long)(ow + 1) * w + ow);

    // The 32-bit kernels below are the general ones above with int indices (the launcher checked that input and
    // output are under 2^31 elements) and coordinates from PoolDivs' multiply-shifts; same loops, same order.

    private static void Max32Kernel(ArrayView<float> y, ArrayView<float> x, PoolArgs s, PoolDivs d)
    {
        int total = (int)s.OutputLength, inPlane = s.H * s.W, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.OutPlane.DivRem(e, out int pix);
            int oy = d.OutW.DivRem(pix, out int ox);
            int xi = plane * inPlane;
            float m = float.NegativeInfinity;
            for (int r = 0; r < s.KernelH; r++)
            {
                int iy = oy * s.StrideH - s.PadH + r * s.DilationH;
                if (iy < 0 || iy >= s.H) continue;
                for (int q = 0; q < s.KernelW; q++)
                {
                    int ix = ox * s.StrideW - s.PadW + q * s.DilationW;
                    if (ix < 0 || ix >= s.W) continue;
                    float v = x[xi + iy * s.W + ix];
                    if (v > m || float.IsNaN(v)) m = v;
                }
            }
            y[e] = m;
        }
    }

    private static void Avg32Kernel(ArrayView<float> y, ArrayView<float> x, PoolArgs s, PoolDivs d)
    {
        int total = (int)s.OutputLength, inPlane = s.H * s.W, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.OutPlane.DivRem(e, out int pix);
            int oy = d.OutW.DivRem(pix, out int ox);
            var (ys, ye, ph) = Pooling.AvgWindow(oy, s.StrideH, s.PadH, s.PadEndH, s.KernelH, s.H);
            var (xs, xe, pw) = Pooling.AvgWindow(ox, s.StrideW, s.PadW, s.PadEndW, s.KernelW, s.W);
            int xi = plane * inPlane;
            float sum = 0f;
            for (int iy = ys; iy < ye; iy++)
                for (int ix = xs; ix < xe; ix++) sum += x[xi + iy * s.W + ix];
            int divisor = s.CountIncludePad != 0 ? ph * pw : Math.Max(ye - ys, 0) * Math.Max(xe - xs, 0);
            y[e] = divisor > 0 ? sum / divisor : 0f;
        }
    }

    private static void AdaptiveAvg32Kernel(ArrayView<float> y, ArrayView<float> x, AdaptiveAvgArgs a, PoolDivs d)
    {
        int total = (int)y.Length, inPlane = a.H * a.W, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.OutPlane.DivRem(e, out int pix);
            int i = d.OutW.DivRem(pix, out int j);
            var (y0, y1) = PoolDivs.AdaptiveBin(i, a.H, d.OutH);
            var (x0, x1) = PoolDivs.AdaptiveBin(j, a.W, d.OutW);
            int xi = plane * inPlane;
            float sum = 0f;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) sum += x[xi + iy * a.W + ix];
            y[e] = sum / ((y1 - y0) * (x1 - x0));
        }
    }

    private static void MaxBackward32Kernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> x, PoolArgs s, PoolDivs d)
    {
        int oh = s.OutH, ow = s.OutW, total = (int)s.InputLength, outPlane = oh * ow, inPlane = s.H * s.W;
        int stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.InPlane.DivRem(e, out int pix);
            int iy = d.InW.DivRem(pix, out int ix);
            int loY = iy + s.PadH - (s.KernelH - 1) * s.DilationH, loX = ix + s.PadW - (s.KernelW - 1) * s.DilationW;
            int oy0 = loY <= 0 ? 0 : d.StrideH.Div(loY + s.StrideH - 1), oy1 = Math.Min(d.StrideH.Div(iy + s.PadH), oh - 1);
            int ox0 = loX <= 0 ? 0 : d.StrideW.Div(loX + s.StrideW - 1), ox1 = Math.Min(d.StrideW.Div(ix + s.PadW), ow - 1);
            int xi = plane * inPlane;
            float g = 0f;
            for (int oy = oy0; oy <= oy1; oy++)
                for (int ox = ox0; ox <= ox1; ox++)
                    if (WindowArgMax32(x, xi, s, oy, ox) == pix) g += dy[plane * outPlane + oy * ow + ox];
            dx[e] = g;
        }
    }

    private static void AdaptiveAvgBackward32Kernel(ArrayView<float> dx, ArrayView<float> dy, AdaptiveAvgArgs a, PoolDivs d)
    {
        int total = (int)dx.Length, outPlane = a.OutH * a.OutW, stride = Grid.DimX * Group.DimX;
        for (int e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int plane = d.InPlane.DivRem(e, out int pix);
            int iy = d.InW.DivRem(pix, out int ix);
            float g = 0f;
            for (int i = 0; i < a.OutH; i++)
            {
                var (y0, y1) = PoolDivs.AdaptiveBin(i, a.H, d.OutH);
                if (iy < y0 || iy >= y1) continue;
                for (int j = 0; j < a.OutW; j++)
                {
                    var (x0, x1) = PoolDivs.AdaptiveBin(j, a.W, d.OutW);
                    if (ix < x0 || ix >= x1) continue;
                    g += dy[plane * outPlane + i * a.OutW + j] / (y1 - y0) / (x1 - x0);
                }
            }
            dx[e] = g;
        }
    }

    /// <summary><see cref="WindowArgMax"/> with a 32-bit plane offset.</summary>
    private static int WindowArgMax32(ArrayView<float> x, int xi, PoolArgs s, int oy, int ox)
    {
        int y0 = oy * s.StrideH - s.PadH, x0 = ox * s.StrideW - s.PadW;
        int arg = -1;
        float m = float.NegativeInfinity;
        for (int r = 0; r < s.KernelH; r++)
        {
            int iy = y0 + r * s.DilationH;
            if (iy < 0 || iy >= s.H) continue;
            for (int q = 0; q < s.KernelW; q++)
            {
                int ix = x0 + q * s.DilationW;
                if (ix < 0 || ix >= s.W) continue;
                float v = x[xi + iy * s.W + ix];
                if (arg < 0 || v > m || float.IsNaN(v)) { m = v; arg = iy * s.W + ix; }
            }
        }
        return arg;
    }

    /// <summary>
    /// One thread per dx element (no atomics): it visits the windows that contain it in output order, re-derives
    /// each window's argmax with the host's rule, and sums the dy of those it wins, so the sum is the host's, in
    /// the host's order.
    /// </summary>
    private static void MaxBackwardKernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> x, PoolArgs s)
    {
        int oh = s.OutH, ow = s.OutW;
        long total = s.InputLength;
        long outPlane = (long)oh * ow, inPlane = (long)s.H * s.W;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long plane = e / inPlane;
            int pix = (int)(e - plane * inPlane);
            int iy = pix / s.W, ix = pix - iy * s.W;
            // Windows oy with oy*sh - ph <= iy <= oy*sh - ph + (kh - 1)*dh.
            int loY = iy + s.PadH - (s.KernelH - 1) * s.DilationH, loX = ix + s.PadW - (s.KernelW - 1) * s.DilationW;
            int oy0 = loY <= 0 ? 0 : (loY + s.StrideH - 1) / s.StrideH, oy1 = Math.Min((iy + s.PadH) / s.StrideH, oh - 1);
            int ox0 = loX <= 0 ? 0 : (loX + s.StrideW - 1) / s.StrideW, ox1 = Math.Min((ix + s.PadW) / s.StrideW, ow - 1);
            long xi = plane * inPlane;
            float g = 0f;
            for (int oy = oy0; oy <= oy1; oy++)
                for (int ox = ox0; ox <= ox1; ox++)
                    if (WindowArgMax(x, xi, s, oy, ox) == pix) g += dy[plane * outPlane + (long)oy * ow + ox];
            dx[e] = g;
        }
    }

    /// <summary>One thread per dx element: sums dy / binH / binW over the bins that contain it, in output order (as the host).</summary>
    private static void AdaptiveAvgBackwardKernel(ArrayView<float> dx, ArrayView<float> dy, AdaptiveAvgArgs a)
    {
        long outPlane = (long)a.OutH * a.OutW, inPlane = (long)a.H * a.W;
        long total = a.Planes * inPlane;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long plane = e / inPlane;
            int pix = (int)(e - plane * inPlane);
            int iy = pix / a.W, ix = pix - iy * a.W;
            float g = 0f;
            for (int i = 0; i < a.OutH; i++)
            {
                var (y0, y1) = Pooling.AdaptiveBin(i, a.H, a.OutH);
                if (iy < y0 || iy >= y1) continue;
                for (int j = 0; j < a.OutW; j++)
                {
                    var (x0, x1) = Pooling.AdaptiveBin(j, a.W, a.OutW);
                    if (ix < x0 || ix >= x1) continue;
                    g += dy[plane * outPlane + (long)i * a.OutW + j] / (y1 - y0) / (x1 - x0);
                }
            }
            dx[e] = g;
        }
    }

    /// <summary><see cref="Pooling.MaxArg"/> on the device: the plane index of window (oy, ox)'s max, -1 when it has no input.</summary>
    private static int WindowArgMax(ArrayView<float> x, long xi, PoolArgs s, int oy, int ox)
    {
        int y0 = oy * s.StrideH - s.PadH, x0 = ox * s.StrideW - s.PadW;
        int arg = -1;
        float m = float.NegativeInfinity;
        for (int r = 0; r < s.KernelH; r++)
        {
            int iy = y0 + r * s.DilationH;
            if (iy < 0 || iy >= s.H) continue;
            for (int q = 0; q < s.KernelW; q++)
            {
                int ix = x0 + q * s.DilationW;
                if (ix < 0 || ix >= s.W) continue;
                float v = x[xi + (long)iy * s.W + ix];
                if (arg < 0 || v > m || float.IsNaN(v)) { m = v; arg = iy * s.W + ix; }
            }
        }
        return arg;
    }

    private static void MaxKernel(ArrayView<float> y, ArrayView<float> x, PoolArgs s)
    {
        int oh = s.OutH, ow = s.OutW;
        long total = s.OutputLength;
        long outPlane = (long)oh * ow, inPlane = (long)s.H * s.W;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long plane = e / outPlane;
            int pix = (int)(e - plane * outPlane);
            int oy = pix / ow, ox = pix - oy * ow;
            long xi = plane * inPlane;
            float m = float.NegativeInfinity;
            for (int r = 0; r < s.KernelH; r++)
            {
                int iy = oy * s.StrideH - s.PadH + r * s.DilationH;
                if (iy < 0 || iy >= s.H) continue;
                for (int q = 0; q < s.KernelW; q++)
                {
                    int ix = ox * s.StrideW - s.PadW + q * s.DilationW;
                    if (ix < 0 || ix >= s.W) continue;
                    float v = x[xi + (long)iy * s.W + ix];
                    if (v > m || float.IsNaN(v)) m = v;
                }
            }
            y[e] = m;
        }
    }

    /// <summary>One thread per output element, the loops of <see cref="Pooling.AvgForwardHost"/>.</summary>
    private static void AvgKernel(ArrayView<float> y, ArrayView<float> x, PoolArgs s)
    {
        int oh = s.OutH, ow = s.OutW;
        long total = s.OutputLength;
        long outPlane = (long)oh * ow, inPlane = (long)s.H * s.W;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long plane = e / outPlane;
            int pix = (int)(e - plane * outPlane);
            int oy = pix / ow, ox = pix - oy * ow;
            var (ys, ye, ph) = Pooling.AvgWindow(oy, s.StrideH, s.PadH, s.PadEndH, s.KernelH, s.H);
            var (xs, xe, pw) = Pooling.AvgWindow(ox, s.StrideW, s.PadW, s.PadEndW, s.KernelW, s.W);
            long xi = plane * inPlane;
            float sum = 0f;
            for (int iy = ys; iy < ye; iy++)
                for (int ix = xs; ix < xe; ix++) sum += x[xi + (long)iy * s.W + ix];
            int divisor = s.CountIncludePad != 0 ? ph * pw : Math.Max(ye - ys, 0) * Math.Max(xe - xs, 0);
            y[e] = divisor > 0 ? sum / divisor : 0f;
        }
    }

    private static void AdaptiveAvgKernel(ArrayView<float> y, ArrayView<float> x, AdaptiveAvgArgs a)
    {
        long outPlane = (long)a.OutH * a.OutW, inPlane = (long)a.H * a.W;
        long total = a.Planes * outPlane;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long plane = e / outPlane;
            int pix = (int)(e - plane * outPlane);
            int i = pix / a.OutW, j = pix - i * a.OutW;
            var (y0, y1) = Pooling.AdaptiveBin(i, a.H, a.OutH);
            var (x0, x1) = Pooling.AdaptiveBin(j, a.W, a.OutW);
            long xi = plane * inPlane;
            float sum = 0f;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) sum += x[xi + (long)iy * a.W + ix];
            y[e] = sum / ((y1 - y0) * (x1 - x0));
        }
    }
}
