using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Convolution forward as an implicit GEMM on tensor cores (mma.sync through inline PTX): tf32, fp16 and bf16 inputs,
// fp32 accumulation. Dense convolutions only (groups 1, dilation 1), like V2ImplicitGemm.

// ===== Host twin =====
public static partial class Conv2d
{
    /// <summary>
    /// The specification of the mma versions: x and w rounded to <paramref name="precision"/> exactly as the GPU rounds
    /// them while staging (<see cref="Precisions.Round(Precision, float)"/>), then the fp32 im2col GEMM (no Winograd: its
    /// transforms would round the rounded inputs again). The bias is added in fp32, unrounded.
    /// </summary>
    public static void ForwardHostRounded(Precision precision, Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
        => ForwardHost_V2Im2colGemm(y, precision.Rounded(x), precision.Rounded(w), b, s, relu);
}

// ===== ILGPU kernels =====

/// <summary>
/// The tensor-core convolution versions (<see cref="Conv2dVersion.V4MmaTf32"/>, <see cref="Conv2dVersion.V4MmaF16"/>,
/// <see cref="Conv2dVersion.V4MmaBf16"/>): Y (K, N·OH·OW) = W (K, C·R·S) x im2col(X), 128 output channels x 128 output
/// pixels per 256-thread group, the im2col columns gathered from X straight into shared memory (see
/// <see cref="MmaTile"/>). Loaded only on CUDA devices of compute capability 8.0 or newer.
/// </summary>
internal sealed class Conv2dMmaGpu
{
    private const int Tile = MmaTile.Rows;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs> _tf32, _f16, _bf16;

    /// <param name="emulation">Load them on ILGPU's CPU accelerator, where each mma is emulated (tests only: see
    /// <see cref="KernelSelfTest.MmaEmulationConvCase"/>).</param>
    public Conv2dMmaGpu(Accelerator accelerator, bool emulation = false)
    {
        if (emulation ? accelerator.AcceleratorType != AcceleratorType.CPU : !Precisions.HasTensorCores(accelerator))
            throw new NotSupportedException($"conv2d mma: {Precisions.WhyNot(Precision.Tf32, accelerator)}");
        _tf32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(Tf32Kernel);
        _f16 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(F16Kernel);
        _bf16 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(Bf16Kernel);
    }

    public static Precision PrecisionOf(Conv2dVersion v) => v switch
    {
        Conv2dVersion.V4MmaTf32 => Precision.Tf32,
        Conv2dVersion.V4MmaF16 => Precision.Fp16,
        Conv2dVersion.V4MmaBf16 => Precision.Bf16,
        _ => Precision.Fp32,
    };

    public static Conv2dVersion? VersionOf(Precision p) => p switch
    {
        Precision.Tf32 => Conv2dVersion.V4MmaTf32,
        Precision.Fp16 => Conv2dVersion.V4MmaF16,
        Precision.Bf16 => Conv2dVersion.V4MmaBf16,
        _ => null,
    };

    /// <summary>Launches the version; shapes and lengths were checked by <see cref="Conv2dGpu.Forward(Conv2dVersion, ArrayView{float}, ArrayView{float}, ArrayView{float}, ArrayView{float}, ConvShape, bool)"/>.</summary>
    internal void Launch(Conv2dVersion version, ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs args, ConvShape s)
    {
        // The pixel index and the input offsets are 32-bit on the hot path (no 64-bit division).
        if (args.Pixels > int.MaxValue - Tile || (long)s.C * s.H * s.W > int.MaxValue)
            throw new ArgumentException($"conv2d {version}: N*OH*OW = {args.Pixels} or C*H*W above 2^31 - 129; split the batch: {s}");
        var kernel = version switch
        {
            Conv2dVersion.V4MmaTf32 => _tf32,
            Conv2dVersion.V4MmaF16 => _f16,
            Conv2dVersion.V4MmaBf16 => _bf16,
            _ => throw new ArgumentOutOfRangeException(nameof(version), version, "conv2d mma: not an mma version"),
        };
        var grid = new Index2D((int)((args.Pixels + Tile - 1) / Tile), (s.K + Tile - 1) / Tile);
        kernel(new KernelConfig(grid, new Index2D(MmaTile.Threads, 1)), y, x, w, b, args);
    }

    private static void Tf32Kernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
        => Body<Tf32Format>(y, x, w, b, s);

    private static void F16Kernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
        => Body<F16Format>(y, x, w, b, s);

    private static void Bf16Kernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
        => Body<Bf16Format>(y, x, w, b, s);

    /// <summary>
    /// Group (bx, by) owns output channels by·128 .. +128 and GEMM columns (flattened (n, oy, ox)) bx·128 .. +128.
    /// Ws: weight rows (OIHW is (K, C·R·S) row-major); Xs: im2col columns, thread t gathering column t % 128 at
    /// reduction words t / 128 + 2 i. Its (c, r, q) position walks forward from one decode per slice, and every lane of
    /// a warp walks the same steps, so the walk neither divides nor diverges.
    /// </summary>
    private static void Body<TFormat>(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
        where TFormat : struct, IMmaFormat
    {
        var Ws = SharedMemory.Allocate<uint>(MmaTile.Size);
        var Xs = SharedMemory.Allocate<uint>(MmaTile.Size);
        var f = default(TFormat);
        int epw = f.ElementsPerWord;
        int t = Group.IdxX, lane = t & 31, warp = t >> 5, gq = lane >> 2, q = lane & 3;
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        int row0 = Grid.IdxY * Tile, col0 = Grid.IdxX * Tile;
        int pixels = (int)s.Pixels, plane = s.OutH * s.OutW, rs = s.R * s.S;
        int slice = MmaTile.Words * epw;

        // This thread's im2col column.
        int lj = t & 127, lcol = col0 + lj;
        bool colValid = lcol < pixels;
        int iyBase = 0, ixBase = 0;
        long xn = 0;
        if (colValid)
        {
            int n = lcol / plane, pix = lcol - n * plane;
            int oy = pix / s.OutW, ox = pix - oy * s.OutW;
            iyBase = oy * s.StrideH - s.PadH;
            ixBase = ox * s.StrideW - s.PadW;
            xn = (long)n * s.C * s.H * s.W;
        }
        long xBase = xn;

        var emu = LocalMemory.Allocate<float>(64); // the accumulators of the CPU emulation only (see MmaAccumulators)
        MmaAccumulators.Declare(emu);
        for (int k0 = 0; k0 < s.Crs; k0 += slice)
        {
            MmaTile.Stage<TFormat>(Ws, w, s.K, s.Crs, row0, k0, s.Crs, 1, t);

            // Reduction index of this thread's first word, decoded once per slice into (c, kr, kq).
            int gp = k0 + (t >> 7) * epw;
            int c = gp / rs, rem = gp - c * rs;
            int kr = rem / s.S, kq = rem - kr * s.S;
            for (int i = 0; i < MmaTile.Rows * MmaTile.Words / MmaTile.Threads; i++)
            {
                int kw = (t >> 7) + 2 * i;
                float x0 = Gather(x, s, colValid, xBase, gp, c, iyBase + kr, ixBase + kq);
                float x1 = 0f;
                if (epw == 2)
                {
                    Advance(s, 1, ref gp, ref c, ref kr, ref kq);
                    x1 = Gather(x, s, colValid, xBase, gp, c, iyBase + kr, ixBase + kq);
                    Advance(s, 3, ref gp, ref c, ref kr, ref kq);
                }
                else Advance(s, 2, ref gp, ref c, ref kr, ref kq);
                Xs[MmaTile.Index(lj, kw)] = f.Pack(x0, x1);
            }
            Group.Barrier();
            MmaAccumulators.Accumulate<TFormat>(Ws, Xs, wm, wn, gq, q, emu);
            Group.Barrier();
        }

        // Tile t = 4 i + j: output channels r + 16 i (+ 8), pixels cj + 8 j (+ 1). Written out: the accumulator
        // register of a Read must be a constant.
        int r = row0 + wm + gq, cj = col0 + wn + 2 * q;
        StoreTile(y, b, s, r, cj, 0, emu); StoreTile(y, b, s, r, cj + 8, 1, emu); StoreTile(y, b, s, r, cj + 16, 2, emu); StoreTile(y, b, s, r, cj + 24, 3, emu);
        StoreTile(y, b, s, r + 16, cj, 4, emu); StoreTile(y, b, s, r + 16, cj + 8, 5, emu); StoreTile(y, b, s, r + 16, cj + 16, 6, emu); StoreTile(y, b, s, r + 16, cj + 24, 7, emu);
        StoreTile(y, b, s, r + 32, cj, 8, emu); StoreTile(y, b, s, r + 32, cj + 8, 9, emu); StoreTile(y, b, s, r + 32, cj + 16, 10, emu); StoreTile(y, b, s, r + 32, cj + 24, 11, emu);
        StoreTile(y, b, s, r + 48, cj, 12, emu); StoreTile(y, b, s, r + 48, cj + 8, 13, emu); StoreTile(y, b, s, r + 48, cj + 16, 14, emu); StoreTile(y, b, s, r + 48, cj + 24, 15, emu);
    }

    /// <summary>x at channel c, row iy, column ix of this thread's sample; 0 in the padding, past C·R·S or past the last pixel.</summary>
    private static float Gather(ArrayView<float> x, ConvArgs s, bool colValid, long xBase, int gp, int c, int iy, int ix)
    {
        if (!colValid || gp >= s.Crs || iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return 0f;
        return x[xBase + (c * s.H + iy) * s.W + ix];
    }

    /// <summary>Moves the reduction index gp = (c·R + kr)·S + kq forward by <paramref name="d"/> without dividing.</summary>
    private static void Advance(ConvArgs s, int d, ref int gp, ref int c, ref int kr, ref int kq)
    {
        gp += d;
        kq += d;
        while (kq >= s.S)
        {
            kq -= s.S;
            kr++;
            if (kr == s.R) { kr = 0; c++; }
        }
    }

    private static void StoreTile(ArrayView<float> y, ArrayView<float> b, ConvArgs s, int k, int col, int tile, ArrayView<float> emu)
    {
        Store(y, b, s, k, col, MmaAccumulators.Read(4 * tile, emu));
        Store(y, b, s, k, col + 1, MmaAccumulators.Read(4 * tile + 1, emu));
        Store(y, b, s, k + 8, col, MmaAccumulators.Read(4 * tile + 2, emu));
        Store(y, b, s, k + 8, col + 1, MmaAccumulators.Read(4 * tile + 3, emu));
    }

    /// <summary>The epilogue of <see cref="Conv2dGpu"/>'s implicit GEMM: bias, then ReLU; y (N, K, OH, OW).</summary>
    private static void Store(ArrayView<float> y, ArrayView<float> b, ConvArgs s, int k, int col, float acc)
    {
        if (k >= s.K || col >= s.Pixels) return;
        int plane = s.OutH * s.OutW;
        int n = col / plane, pix = col - n * plane;
        float v = acc + b[k];
        y[((long)n * s.K + k) * plane + pix] = s.Relu != 0 && v < 0f ? 0f : v;
    }
}
