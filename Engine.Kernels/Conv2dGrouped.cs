using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Convolution, forward only, for the shapes the dense versions refuse: grouped (ResNeXt), depthwise (MobileNet) and
// dilated (DeepLab) convolutions. Output channel k belongs to group g = k / (K/G) and reads input channels
// [g·C/G, (g+1)·C/G); weights are (K, C/G, R, S); tap (r, q) reads input row oy·strideH - padTop + r·dilationH and
// column ox·strideW - padLeft + q·dilationW, 0 outside the input (ONNX Conv, PyTorch nn.Conv2d).

// ===== Host twin =====
public static partial class Conv2d
{
    /// <summary>
    /// The host entry point for shapes that are not <see cref="ConvShape.IsDense"/>. Rule: depthwise (G = C = K)
    /// runs <see cref="ForwardHost_Depthwise"/>; undilated groups of at least 8 input channels run the dense
    /// <see cref="ForwardHost"/> once per (image, group) on contiguous slices (<see cref="ForwardHost_GroupsOverDense"/>);
    /// everything else <see cref="ForwardHost_GroupedDirect"/>.
    /// </summary>
    static void ForwardHostGrouped(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        if (IsDepthwise(s)) ForwardHost_Depthwise(y, x, w, b, s, relu);
        else if (s.DilationH == 1 && s.DilationW == 1 && s.GroupChannels >= 8) ForwardHost_GroupsOverDense(y, x, w, b, s, relu);
        else ForwardHost_GroupedDirect(y, x, w, b, s, relu);
    }

    /// <summary>One filter per channel: groups = input channels = output channels.</summary>
    public static bool IsDepthwise(ConvShape s) => s.Groups == s.C && s.K == s.C;

    /// <summary>
    /// Grouped version 1, the specification: direct loops over the group's channels and the dilated taps, one
    /// (n, k) plane per task. Any groups, dilation, stride and padding; dense shapes too.
    /// </summary>
    public static unsafe void ForwardHost_GroupedDirect(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        int oh = s.OutH, ow = s.OutW, cg = s.GroupChannels, kg = s.GroupOutChannels;
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
        {
            nint yp = (nint)py, xp = (nint)px, wp = (nint)pw, bp = (nint)pb;
            void Plane(int nk)
            {
                int n = nk / s.K, k = nk % s.K, g = k / kg;
                float* yo = (float*)yp + ((long)n * s.K + k) * oh * ow;
                float* xg = (float*)xp + ((long)n * s.C + (long)g * cg) * s.H * s.W;   // (C/G, H, W) of this group
                float* wk = (float*)wp + (long)k * cg * s.R * s.S;                    // (C/G, R, S)
                float bias = ((float*)bp)[k];
                for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    float acc = bias;
                    for (int c = 0; c < cg; c++)
                    for (int r = 0; r < s.R; r++)
                    {
                        int iy = oy * s.StrideH - s.PadH + r * s.DilationH;
                        if ((uint)iy >= (uint)s.H) continue;
                        for (int q = 0; q < s.S; q++)
                        {
                            int ix = ox * s.StrideW - s.PadW + q * s.DilationW;
                            if ((uint)ix >= (uint)s.W) continue;
                            acc += xg[((long)c * s.H + iy) * s.W + ix] * wk[(c * s.R + r) * s.S + q];
                        }
                    }
                    yo[oy * ow + ox] = relu && acc < 0f ? 0f : acc;
                }
            }
            if (s.ForwardFlops < 4e6) for (int nk = 0; nk < s.N * s.K; nk++) Plane(nk);
            else Parallel.For(0, s.N * s.K, Plane);
        }
    }

    /// <summary>
    /// Depthwise (MobileNet's 3x3 and 5x5, any stride, padding and dilation): y[n, c] = x[n, c] ⋆ w[c] + b[c].
    /// Per output row, each tap adds w[c, r, q]·x along the output columns whose input column is inside the image,
    /// so the inner loop has no bounds test and runs on vectors over the output width when strideW = 1.
    /// One (n, c) plane per task.
    /// </summary>
    public static unsafe void ForwardHost_Depthwise(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        if (!IsDepthwise(s))
            throw new ArgumentException($"conv2d Depthwise computes groups = input channels = output channels only, not {s}");
        int oh = s.OutH, ow = s.OutW, rs = s.R * s.S, lanes = System.Numerics.Vector<float>.Count;
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
        {
            nint yp = (nint)py, xp = (nint)px, wp = (nint)pw, bp = (nint)pb;
            void Plane(int nc)
            {
                int c = nc % s.C;
                float* xi = (float*)xp + (long)nc * s.H * s.W, yo = (float*)yp + (long)nc * oh * ow;
                float* wc = (float*)wp + (long)c * rs;
                float bias = ((float*)bp)[c];
                for (int oy = 0; oy < oh; oy++)
                {
                    float* yr = yo + (long)oy * ow;
                    new Span<float>(yr, ow).Fill(bias);
                    for (int r = 0; r < s.R; r++)
                    {
                        int iy = oy * s.StrideH - s.PadH + r * s.DilationH;
                        if ((uint)iy >= (uint)s.H) continue;
                        float* row = xi + (long)iy * s.W;
                        for (int q = 0; q < s.S; q++)
                        {
                            // Output columns [lo, hi) read input columns ox·strideW + off inside [0, W).
                            int off = q * s.DilationW - s.PadW, sw = s.StrideW;
                            int lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                            int hi = s.W - 1 - off < 0 ? 0 : Math.Min(ow, (s.W - 1 - off) / sw + 1);
                            float wv = wc[r * s.S + q];
                            int ox = lo;
                            if (sw == 1)
                            {
                                var wvec = new System.Numerics.Vector<float>(wv);
                                float* src = row + off;
                                for (; ox + lanes <= hi; ox += lanes)
                                    System.Numerics.Vector.Store(System.Numerics.Vector.Load(yr + ox) + wvec * System.Numerics.Vector.Load(src + ox), yr + ox);
                                for (; ox < hi; ox++) yr[ox] += wv * src[ox];
                            }
                            else
                                for (; ox < hi; ox++) yr[ox] += wv * row[ox * sw + off];
                        }
                    }
                    if (relu)
                        for (int ox = 0; ox < ow; ox++) if (yr[ox] < 0f) yr[ox] = 0f;
                }
            }
            if (s.ForwardFlops < 4e6) for (int nc = 0; nc < s.N * s.C; nc++) Plane(nc);
            else Parallel.For(0, s.N * s.C, Plane);
        }
    }

    /// <summary>
    /// Undilated groups on the dense path: for image n and group g, x[n, g·C/G ..] (C/G, H, W), w[g·K/G ..]
    /// (K/G, C/G, R, S), b[g·K/G ..] and y[n, g·K/G ..] (K/G, OH, OW) are contiguous, so each pair is one dense
    /// batch-1 convolution run by <see cref="ForwardHost"/> (im2col GEMM or Winograd by its own rule).
    /// </summary>
    public static void ForwardHost_GroupsOverDense(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        if (s.DilationH != 1 || s.DilationW != 1)
            throw new ArgumentException($"conv2d GroupsOverDense computes undilated convolutions only, not {s}");
        int cg = s.GroupChannels, kg = s.GroupOutChannels;
        var d = new ConvShape(1, cg, s.H, s.W, kg, s.R, s.S, s.StrideH, s.StrideW, s.PadH, s.PadW, s.PadEndH, s.PadEndW);
        long xLen = d.InputLength, yLen = d.OutputLength, wLen = d.WeightLength;
        for (int n = 0; n < s.N; n++)
            for (int g = 0; g < s.Groups; g++)
            {
                long gi = (long)n * s.Groups + g;
                ForwardHost(y.Slice(checked((int)(gi * yLen)), (int)yLen), x.Slice(checked((int)(gi * xLen)), (int)xLen),
                    w.Slice(checked((int)(g * wLen)), (int)wLen), b.Slice(g * kg, kg), d, relu);
            }
    }
}

// ===== ILGPU kernel =====
public sealed partial class Conv2dGpu
{
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs> _grouped;

    /// <summary>Grid-stride over y's elements, the loops of <see cref="Conv2d.ForwardHost_GroupedDirect"/>.</summary>
    private static void GroupedDirectKernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
    {
        long total = s.Pixels * s.K;
        long stride = (long)Grid.DimX * Group.DimX;
        long plane = (long)s.OutH * s.OutW;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long nk = e / plane;
            int pix = (int)(e - nk * plane);
            int n = (int)(nk / s.K), k = (int)(nk - (long)n * s.K);
            int g = k / s.GroupK;
            int oy = pix / s.OutW, ox = pix - oy * s.OutW;
            long xg = ((long)n * s.C + (long)g * s.GroupC) * s.H * s.W;
            long wk = (long)k * s.Crs;
            float acc = b[k];
            for (int c = 0; c < s.GroupC; c++)
            for (int r = 0; r < s.R; r++)
            {
                int iy = oy * s.StrideH - s.PadH + r * s.DilationH;
                if (iy < 0 || iy >= s.H) continue;
                for (int q = 0; q < s.S; q++)
                {
                    int ix = ox * s.StrideW - s.PadW + q * s.DilationW;
                    if (ix < 0 || ix >= s.W) continue;
                    acc += x[xg + ((long)c * s.H + iy) * s.W + ix] * w[wk + (c * s.R + r) * s.S + q];
                }
            }
            y[e] = s.Relu != 0 && acc < 0f ? 0f : acc;
        }
    }
}
