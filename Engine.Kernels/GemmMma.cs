using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// GEMM on tensor cores (mma.sync through inline PTX): tf32, fp16 and bf16 inputs, fp32 accumulation.

// ===== Host twin =====
public static partial class Gemm
{
    /// <summary>
    /// The specification of the mma versions: A and B rounded to <paramref name="precision"/> exactly as the GPU rounds
    /// them while staging (<see cref="Precisions.Round(Precision, float)"/>), then an fp32 GEMM. Products of rounded
    /// inputs are exact in fp32, so only the order and rounding of the fp32 sums can differ from the GPU.
    /// </summary>
    public static void HostRounded(Precision precision, Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
        => Host_V2Blocked(c, precision.Rounded(a), precision.Rounded(b), s);
}

// ===== ILGPU kernels =====

/// <summary>
/// The tensor-core GEMM versions (<see cref="GemmVersion.V4MmaTf32"/>, <see cref="GemmVersion.V4MmaF16"/>,
/// <see cref="GemmVersion.V4MmaBf16"/>): 128 x 128 tiles of C per 256-thread group, 32-word slices of A and Bᵀ staged
/// through registers into shared memory (rounded or packed on the way, see <see cref="MmaTile"/>), 8 warps of 64 x 32.
/// Same arguments and epilogue as <see cref="GemmGpu"/> (alpha, beta, bias, ReLU), any size, any transposes.
/// Inline PTX only runs on CUDA: the kernels are loaded only on devices of compute capability 8.0 or newer
/// (<see cref="Precisions.HasTensorCores"/>), never on the CPU accelerator or OpenCL.
/// </summary>
internal sealed class GemmMmaGpu
{
    private const int Tile = MmaTile.Rows;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> _tf32, _f16, _bf16;

    /// <param name="emulation">Load them on ILGPU's CPU accelerator, where each mma is emulated (tests only: see
    /// <see cref="KernelSelfTest.MmaEmulationGemmCase"/>).</param>
    public GemmMmaGpu(Accelerator accelerator, bool emulation = false)
    {
        if (emulation ? accelerator.AcceleratorType != AcceleratorType.CPU : !Precisions.HasTensorCores(accelerator))
            throw new NotSupportedException($"gemm mma: {Precisions.WhyNot(Precision.Tf32, accelerator)}");
        _tf32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(Tf32Kernel);
        _f16 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(F16Kernel);
        _bf16 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(Bf16Kernel);
    }

    /// <summary>The input precision of an mma version; fp32 for the SIMT ones.</summary>
    public static Precision PrecisionOf(GemmVersion v) => v switch
    {
        GemmVersion.V4MmaTf32 => Precision.Tf32,
        GemmVersion.V4MmaF16 => Precision.Fp16,
        GemmVersion.V4MmaBf16 => Precision.Bf16,
        _ => Precision.Fp32,
    };

    /// <summary>The mma version of a precision (null for fp32).</summary>
    public static GemmVersion? VersionOf(Precision p) => p switch
    {
        Precision.Tf32 => GemmVersion.V4MmaTf32,
        Precision.Fp16 => GemmVersion.V4MmaF16,
        Precision.Bf16 => GemmVersion.V4MmaBf16,
        _ => null,
    };

    /// <summary>Launches the version; arguments were checked by <see cref="GemmGpu"/>.</summary>
    internal void Launch(GemmVersion version, ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs args)
    {
        var kernel = version switch
        {
            GemmVersion.V4MmaTf32 => _tf32,
            GemmVersion.V4MmaF16 => _f16,
            GemmVersion.V4MmaBf16 => _bf16,
            _ => throw new ArgumentOutOfRangeException(nameof(version), version, "gemm mma: not an mma version"),
        };
        // Columns of C on X (up to 2^31-1 groups), rows on Y (65535 on CUDA: M up to 8.3M).
        var grid = new Index2D((args.N + Tile - 1) / Tile, (args.M + Tile - 1) / Tile);
        kernel(new KernelConfig(grid, new Index2D(MmaTile.Threads, 1)), c, a, b, bias, args);
    }

    private static void Tf32Kernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
        => Body<Tf32Format>(c, a, b, bias, g);

    private static void F16Kernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
        => Body<F16Format>(c, a, b, bias, g);

    private static void Bf16Kernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
        => Body<Bf16Format>(c, a, b, bias, g);

    /// <summary>
    /// Group (bx, by) owns C[by·128 .. +128, bx·128 .. +128]. Per slice: As = op(A) rows x reduction words, Bs = op(B)ᵀ
    /// rows (columns of C) x reduction words, both in the <see cref="MmaTile"/> layout; element (i, k) of op(A) is
    /// a[i·lda + k] (a[k·lda + i] transposed) and element (k, j) of op(B) is b[k·ldb + j] (b[j·ldb + k] transposed).
    /// </summary>
    private static void Body<TFormat>(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
        where TFormat : struct, IMmaFormat
    {
        var As = SharedMemory.Allocate<uint>(MmaTile.Size);
        var Bs = SharedMemory.Allocate<uint>(MmaTile.Size);
        int t = Group.IdxX, lane = t & 31, warp = t >> 5, gq = lane >> 2, q = lane & 3;
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        int row0 = Grid.IdxY * Tile, col0 = Grid.IdxX * Tile;
        long aRow = g.TransA != 0 ? 1 : g.Lda, aK = g.TransA != 0 ? g.Lda : 1;
        long bRow = g.TransB != 0 ? g.Ldb : 1, bK = g.TransB != 0 ? 1 : g.Ldb;
        int slice = MmaTile.Words * default(TFormat).ElementsPerWord;

        var emu = LocalMemory.Allocate<float>(64); // the accumulators of the CPU emulation only (see MmaAccumulators)
        MmaAccumulators.Declare(emu);
        for (int k0 = 0; k0 < g.K; k0 += slice)
        {
            MmaTile.Stage<TFormat>(As, a, g.M, g.K, row0, k0, aRow, aK, t);
            MmaTile.Stage<TFormat>(Bs, b, g.N, g.K, col0, k0, bRow, bK, t);
            Group.Barrier();
            MmaAccumulators.Accumulate<TFormat>(As, Bs, wm, wn, gq, q, emu);
            Group.Barrier();
        }

        // Tile t = 4 i + j of the warp: this lane's elements at rows r + 16 i (+ 8), columns cj + 8 j (+ 1). Written out:
        // the accumulator register of a Read must be a constant.
        int r = row0 + wm + gq, cj = col0 + wn + 2 * q;
        StoreTile(c, bias, g, r, cj, 0, emu); StoreTile(c, bias, g, r, cj + 8, 1, emu); StoreTile(c, bias, g, r, cj + 16, 2, emu); StoreTile(c, bias, g, r, cj + 24, 3, emu);
        StoreTile(c, bias, g, r + 16, cj, 4, emu); StoreTile(c, bias, g, r + 16, cj + 8, 5, emu); StoreTile(c, bias, g, r + 16, cj + 16, 6, emu); StoreTile(c, bias, g, r + 16, cj + 24, 7, emu);
        StoreTile(c, bias, g, r + 32, cj, 8, emu); StoreTile(c, bias, g, r + 32, cj + 8, 9, emu); StoreTile(c, bias, g, r + 32, cj + 16, 10, emu); StoreTile(c, bias, g, r + 32, cj + 24, 11, emu);
        StoreTile(c, bias, g, r + 48, cj, 12, emu); StoreTile(c, bias, g, r + 48, cj + 8, 13, emu); StoreTile(c, bias, g, r + 48, cj + 16, 14, emu); StoreTile(c, bias, g, r + 48, cj + 24, 15, emu);
    }

    /// <summary>One lane's four elements of 16 x 8 tile <paramref name="tile"/>: (i, j), (i, j+1), (i+8, j), (i+8, j+1).</summary>
    private static void StoreTile(ArrayView<float> c, ArrayView<float> bias, GemmArgs g, int i, int j, int tile, ArrayView<float> emu)
    {
        Store(c, bias, g, i, j, MmaAccumulators.Read(4 * tile, emu));
        Store(c, bias, g, i, j + 1, MmaAccumulators.Read(4 * tile + 1, emu));
        Store(c, bias, g, i + 8, j, MmaAccumulators.Read(4 * tile + 2, emu));
        Store(c, bias, g, i + 8, j + 1, MmaAccumulators.Read(4 * tile + 3, emu));
    }

    /// <summary>The epilogue of <see cref="GemmGpu"/>: alpha, beta (C not read when beta is 0), bias, ReLU; skips outside C.</summary>
    private static void Store(ArrayView<float> c, ArrayView<float> bias, GemmArgs g, int i, int j, float acc)
    {
        if (i >= g.M || j >= g.N) return;
        long ci = (long)i * g.Ldc + j;
        float v = g.Alpha * acc + (g.Beta == 0f ? 0f : g.Beta * c[ci]);
        if (g.HasBias != 0) v += bias[j];
        if (g.Relu != 0 && v < 0f) v = 0f;
        c[ci] = v;
    }
}
