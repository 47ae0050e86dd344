using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Max pooling and torchvision's adaptive average pooling.

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
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int oh = s.OutH, ow = s.OutW, h = s.H, w = s.W;
        long planes = (long)s.N * s.C;
        if (planes == 0 || oh <= 0 || ow <= 0) return;
        bool hot = s.KernelH == 2 && s.KernelW == 2 && s.StrideH == 2 && s.StrideW == 2 && s.PadH == 0 && s.PadW == 0;
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

    /// <summary>Version 1: plane by plane on one thread. The specification.</summary>
    public static void MaxForwardHost_V1Naive(Span<float> y, ReadOnlySpan<float> x, PoolShape s)
    {
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        int oh = s.OutH, ow = s.OutW;
        for (long plane = 0; plane < (long)s.N * s.C; plane++)
        {
            var xi = x.Slice((int)(plane * s.H * s.W), s.H * s.W);
            var yo = y.Slice((int)(plane * oh * ow), oh * ow);
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
            {
                float m = float.NegativeInfinity;
                for (int r = 0; r < s.KernelH; r++)
                {
                    int iy = oy * s.StrideH - s.PadH + r;
                    if ((uint)iy >= (uint)s.H) continue;
                    for (int q = 0; q < s.KernelW; q++)
                    {
                        int ix = ox * s.StrideW - s.PadW + q;
                        if ((uint)ix >= (uint)s.W) continue;
                        float v = xi[iy * s.W + ix];
                        if (v > m || float.IsNaN(v)) m = v;
                    }
                }
                yo[oy * ow + ox] = m;
            }
        }
    }

    /// <summary>V1's window loop for one plane (H, W) -> (OH, OW).</summary>
    static void MaxPlane(Span<float> yo, ReadOnlySpan<float> xi, PoolShape s)
    {
        int oh = s.OutH, ow = s.OutW;
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float m = float.NegativeInfinity;
            for (int r = 0; r < s.KernelH; r++)
            {
                int iy = oy * s.StrideH - s.PadH + r;
                if ((uint)iy >= (uint)s.H) continue;
                for (int q = 0; q < s.KernelW; q++)
                {
                    int ix = ox * s.StrideW - s.PadW + q;
                    if ((uint)ix >= (uint)s.W) continue;
                    float v = xi[iy * s.W + ix];
                    if (v > m || float.IsNaN(v)) m = v;
                }
            }
            yo[oy * ow + ox] = m;
        }
    }

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
                int y0 = i * h / oh, y1 = ((i + 1) * h + oh - 1) / oh;
                for (int j = 0; j < ow; j++)
                {
                    int x0 = j * w / ow, x1 = ((j + 1) * w + ow - 1) / ow;
                    float sum = 0f;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) sum += xi[iy * w + ix];
                    yo[i * ow + j] = sum / ((y1 - y0) * (x1 - x0));
                }
            }
        }
    }
}




// ===== ILGPU kernels =====
