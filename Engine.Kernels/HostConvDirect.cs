using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Direct 3x3 stride-1 pad-1 convolution for few input channels (an RGB or grey stem: VGG16's conv1_1, C = 3), where
/// the im2col GEMM is only C·9 deep: each 6x16 GEMM tile then pays its B packing and its C store for 27 iterations.
/// Here the "B panel" is the image itself: a task copies its output rows' input rows into a zero-padded buffer
/// (C, rows + 2, W + 2), so every tap of 16 neighbouring outputs is two unaligned loads, and a register tile of
/// 6 output channels x 16 output pixels (12 accumulators, as the GEMM's micro-kernel) sums the C·9 taps with
/// broadcast weights from a (C·9, K rounded up to 6) copy of w. Bias and ReLU are applied as the tile is stored
/// straight into y (N, K, OH, OW). Rows of outputs not a multiple of 16 end with a block overlapping the previous one,
/// which stores the same values again. Needs OW ≥ 16 (<see cref="Supports"/>).
/// </summary>
internal static unsafe class HostConvDirect
{
    const int KB = 6, PX = 16;

    /// <summary>Largest C this kernel is meant for: beyond it the im2col GEMM's depth C·9 amortises its packing.</summary>
    internal const int MaxChannels = 4;

    internal static bool Supports(ConvShape s)
        => HostWinograd.Supports(s) && s.C <= MaxChannels && s.OutW >= PX && Avx2.IsSupported && Fma.IsSupported;

    [ThreadStatic] static float[]? t_rows;

    internal static void Forward(float* y, float* x, float* w, float* bias, ConvShape s, bool relu)
    {
        int K = s.K, OH = s.OutH, taps = s.C * 9;
        int kPad = (K + KB - 1) / KB * KB;
        // wT (taps, kPad): the KB weights one tap broadcasts sit side by side; zero past K.
        float[] wtArr = GC.AllocateUninitializedArray<float>(taps * kPad + 16, pinned: true);
        fixed (float* wt = wtArr)
        {
            for (int t = 0; t < taps; t++)
                for (int k = 0; k < kPad; k++)
                    wt[t * kPad + k] = k < K ? w[(long)k * taps + t] : 0f;
            int threads = HostThreads.Count;
            // Row chunks: a few tasks per core over the batch, so batch 1 keeps every core busy and a stolen core balances.
            int chunksPerImage = Math.Clamp((8 * threads + s.N - 1) / s.N, 1, OH);
            int tasks = s.N * chunksPerImage;
            nint yp = (nint)y, xp = (nint)x, wp = (nint)wt, bp = (nint)bias;
            void Task(int task)
            {
                int n = task / chunksPerImage, chunk = task % chunksPerImage;
                int oy0 = (int)((long)OH * chunk / chunksPerImage), oy1 = (int)((long)OH * (chunk + 1) / chunksPerImage);
                if (oy0 < oy1) Rows((float*)yp, (float*)xp, (float*)wp, (float*)bp, s, relu, n, oy0, oy1, kPad);
            }
            if (tasks == 1 || threads == 1 || s.ForwardFlops < 4e6) for (int t = 0; t < tasks; t++) Task(t);
            else Parallel.For(0, tasks, HostThreads.Options, Task);
            GC.KeepAlive(wtArr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(float* y, float* x, float* wt, float* bias, ConvShape s, bool relu, int n, int oy0, int oy1, int kPad)
    {
        int C = s.C, K = s.K, H = s.H, W = s.W, OW = s.OutW, taps = C * 9;
        int rows = oy1 - oy0 + 2, wp = W + 2;
        long planeIn = (long)H * W, planeOut = (long)s.OutH * OW;
        int need = C * rows * wp;
        if (t_rows == null || t_rows.Length < need) t_rows = GC.AllocateUninitializedArray<float>(need, pinned: true);
        fixed (float* pad = t_rows)
        {
            // pad (C, rows, W + 2): input rows oy0 - 1 .. oy1, zero outside the image.
            for (int c = 0; c < C; c++)
                for (int r = 0; r < rows; r++)
                {
                    float* dst = pad + ((long)c * rows + r) * wp;
                    int iy = oy0 - 1 + r;
                    dst[0] = 0f; dst[wp - 1] = 0f;
                    if ((uint)iy < (uint)H) new ReadOnlySpan<float>(x + ((long)n * C + c) * planeIn + (long)iy * W, W).CopyTo(new Span<float>(dst + 1, W));
                    else new Span<float>(dst + 1, W).Clear();
                }
            int* tapOff = stackalloc int[taps];
            for (int c = 0, t = 0; c < C; c++)
                for (int r = 0; r < 3; r++)
                    for (int q = 0; q < 3; q++, t++)
                        tapOff[t] = (c * rows + r) * wp + q;
            float* yn = y + (long)n * K * planeOut;
            for (int oy = oy0; oy < oy1; oy++)
            {
                float* rowBase = pad + (long)(oy - oy0) * wp;
                for (int kb = 0; kb < kPad; kb += KB)
                    for (int ox = 0; ox < OW; ox += PX)
                    {
                        int o = Math.Min(ox, OW - PX);
                        Tile(yn + (long)kb * planeOut + (long)oy * OW + o, planeOut, rowBase + o, tapOff, taps, wt + kb, kPad, bias + kb, Math.Min(KB, K - kb), relu);
                    }
            }
        }
    }

    /// <summary>y[kk·planeOut + 0 .. 15] = Σ_t wt[t·kPad + kk]·x[tapOff[t] + 0 .. 15] + bias[kk] (ReLU) for kk &lt; kv.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile(float* y, long planeOut, float* x, int* tapOff, int taps, float* wt, int kPad, float* bias, int kv, bool relu)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int t = 0; t < taps; t++, wt += kPad)
        {
            float* xt = x + tapOff[t];
            var x0 = Vector256.Load(xt);
            var x1 = Vector256.Load(xt + 8);
            var a = Vector256.Create(wt[0]); c00 = Fma.MultiplyAdd(a, x0, c00); c01 = Fma.MultiplyAdd(a, x1, c01);
            a = Vector256.Create(wt[1]); c10 = Fma.MultiplyAdd(a, x0, c10); c11 = Fma.MultiplyAdd(a, x1, c11);
            a = Vector256.Create(wt[2]); c20 = Fma.MultiplyAdd(a, x0, c20); c21 = Fma.MultiplyAdd(a, x1, c21);
            a = Vector256.Create(wt[3]); c30 = Fma.MultiplyAdd(a, x0, c30); c31 = Fma.MultiplyAdd(a, x1, c31);
            a = Vector256.Create(wt[4]); c40 = Fma.MultiplyAdd(a, x0, c40); c41 = Fma.MultiplyAdd(a, x1, c41);
            a = Vector256.Create(wt[5]); c50 = Fma.MultiplyAdd(a, x0, c50); c51 = Fma.MultiplyAdd(a, x1, c51);
        }
        Store(y, c00, c01, bias[0], relu);
        if (kv > 1) Store(y + planeOut, c10, c11, bias[1], relu);
        if (kv > 2) Store(y + 2 * planeOut, c20, c21, bias[2], relu);
        if (kv > 3) Store(y + 3 * planeOut, c30, c31, bias[3], relu);
        if (kv > 4) Store(y + 4 * planeOut, c40, c41, bias[4], relu);
        if (kv > 5) Store(y + 5 * planeOut, c50, c51, bias[5], relu);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* y, Vector256<float> v0, Vector256<float> v1, float bias, bool relu)
    {
        var b = Vector256.Create(bias);
        v0 += b; v1 += b;
        if (relu)
        {
            // Same rule as the specification (v < 0 ? 0 : v), so NaN passes through.
            var z = Vector256<float>.Zero;
            v0 = Vector256.ConditionalSelect(Vector256.LessThan(v0, z), z, v0);
            v1 = Vector256.ConditionalSelect(Vector256.LessThan(v1, z), z, v1);
        }
        Vector256.Store(v0, y);
        Vector256.Store(v1, y + 8);
    }
}
