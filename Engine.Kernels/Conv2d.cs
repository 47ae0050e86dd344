using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Convolution: forward (and later backward-data, backward-weight).
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin: the CPU backend and the specification the ILGPU kernels are tested against =====
public static partial class Conv2d
{
    /// <summary>y = conv(x, w) + b (then ReLU): the host backend's entry point, dispatching to the fastest version.</summary>
    public static void ForwardHost(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
        => ForwardHost_V1Naive(y, x, w, b, s, relu);

    /// <summary>
    /// y (N, K, OH, OW) = x (N, C, H, W) * w (K, C, R, S) + b (K), then ReLU if <paramref name="relu"/>.
    /// Version 1: direct loops, one (n, k) plane per task. Readable; the specification.
    /// </summary>
    public static unsafe void ForwardHost_V1Naive(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
        Check.Length("b", b.Length, s.K, s);
        int oh = s.OutH, ow = s.OutW;
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
        {
            nint yp = (nint)py, xp = (nint)px, wp = (nint)pw, bp = (nint)pb;
            Parallel.For(0, s.N * s.K, nk =>
            {
                int n = nk / s.K, k = nk % s.K;
                float* yo = (float*)yp + ((long)n * s.K + k) * oh * ow;
                float* xi = (float*)xp + (long)n * s.C * s.H * s.W;
                float* wk = (float*)wp + (long)k * s.C * s.R * s.S;
                float bias = ((float*)bp)[k];
                for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    float acc = bias;
                    for (int c = 0; c < s.C; c++)
                    for (int r = 0; r < s.R; r++)
                    {
                        int iy = oy * s.StrideH - s.PadH + r;
                        if ((uint)iy >= (uint)s.H) continue;
                        for (int q = 0; q < s.S; q++)
                        {
                            int ix = ox * s.StrideW - s.PadW + q;
                            if ((uint)ix >= (uint)s.W) continue;
                            acc += xi[((long)c * s.H + iy) * s.W + ix] * wk[(c * s.R + r) * s.S + q];
                        }
                    }
                    yo[oy * ow + ox] = relu && acc < 0f ? 0f : acc;
                }
            });
        }
    }
}




// ===== ILGPU kernels =====
