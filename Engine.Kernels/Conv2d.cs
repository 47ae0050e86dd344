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
        => ForwardHost_V2Im2colGemm(y, x, w, b, s, relu);

    /// <summary>
    /// Version 2: per image, y_n (K, OH*OW) = W (K, C*R*S) x col_n (C*R*S, OH*OW) with the blocked host GEMM.
    /// col_n is never stored: the GEMM's B-packing reads it straight from the image (Im2colB), and a 1x1
    /// stride-1 unpadded conv reads x_n (C, H*W) as B directly. W is packed once per call and shared by all
    /// images; bias and ReLU are applied in the GEMM's epilogue while the tile is still in registers.
    /// Parallel tasks are (image, slice of output pixels), a few per core, so batch 1 uses every core too.
    /// </summary>
    public static unsafe void ForwardHost_V2Im2colGemm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        int m = s.K, n = s.OutH * s.OutW, k = s.C * s.R * s.S;
        if (s.N == 0 || m == 0 || n == 0) return;
        bool direct = s.R == 1 && s.S == 1 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 0 && s.PadW == 0;
        int mPad = HostGemmKernels.PaddedRows(m);
        float[] aBuf = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)((long)mPad * k + 16)));
        try
        {
            fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* aRaw = aBuf)
            {
                float* ap = (float*)(((nint)aRaw + 63) & ~(nint)63);
                HostGemmKernels.PackA(ap, pw, k, 1, m, k, 1f);
                var epi = new GemmEpilogue(RowBias: (nint)pb, Relu: relu);
                nint app = (nint)ap, yp = (nint)py, xp = (nint)px;
                long imageIn = (long)s.C * s.H * s.W, imageOut = (long)m * n;
                // Slices per image: enough tasks for ~4 per core in total, but no slice narrower than a panel.
                int threads = Environment.ProcessorCount;
                int slices = Math.Clamp((4 * threads + s.N - 1) / s.N, 1, (n + HostGemmKernels.NR - 1) / HostGemmKernels.NR);
                if (s.ForwardFlops / (s.N * slices) < 1e6) slices = 1;
                void Task(int t)
                {
                    int img = t / slices;
                    HostGemmKernels.Range(n, HostGemmKernels.NR, slices, t % slices, out int j0, out int j1);
                    if (j0 >= j1) return;
                    float* xi = (float*)xp + img * imageIn, yo = (float*)yp + img * imageOut;
                    if (direct)
                        HostGemmKernels.Run((float*)app, m, k, new StridedB((nint)xi, n, 1), 0, m, j0, j1, yo, n, 0f, epi, false);
                    else
                        HostGemmKernels.Run((float*)app, m, k, new Im2colB((nint)xi, s), 0, m, j0, j1, yo, n, 0f, epi, false);
                }
                if (threads == 1 || s.ForwardFlops < 4e6) for (int t = 0; t < s.N * slices; t++) Task(t);
                else Parallel.For(0, s.N * slices, Task);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(aBuf); }
    }

    static void CheckForward(ReadOnlySpan<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ConvShape s)
    {
        if (s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0 || s.K < 0 || s.R <= 0 || s.S <= 0 || s.StrideH <= 0 || s.StrideW <= 0
            || s.PadH < 0 || s.PadW < 0 || s.OutH <= 0 || s.OutW <= 0)
            throw new ArgumentException($"invalid convolution shape: {s}");
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
        Check.Length("b", b.Length, s.K, s);
    }

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
