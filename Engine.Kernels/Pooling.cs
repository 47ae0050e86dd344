using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Max pooling and torchvision's adaptive average pooling.

// ===== Host twin =====
public static partial class Pooling
{
    /// <summary>y (N, C, OH, OW) = max over each window of x (N, C, H, W); padding never wins.</summary>
    public static void MaxForwardHost(Span<float> y, ReadOnlySpan<float> x, PoolShape s)
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
