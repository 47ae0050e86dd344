using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Single-precision GEMM, row-major, BLAS conventions (see GemmShape).

// ===== Host twin =====
public static partial class Gemm
{
    /// <summary>C = alpha op(A) op(B) + beta C. Dispatches to the fastest host version.</summary>
    public static void Host(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
        => Host_V2Blocked(c, a, b, s);

    /// <summary>Buffer-length checks shared by every host version; messages name the operand and the shape.</summary>
    static void CheckHostArgs(int cLength, int aLength, int bLength, GemmShape s)
    {
        if (s.M < 0 || s.N < 0 || s.K < 0)
            throw new ArgumentException($"GEMM dimensions must be non-negative: {s}");
        if (s.M == 0 || s.N == 0) return;
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        if (ldc < s.N || lda < (s.TransA ? s.M : s.K) || ldb < (s.TransB ? s.K : s.N))
            throw new ArgumentException($"GEMM leading dimension too small (lda {lda}, ldb {ldb}, ldc {ldc}): {s}");
        if (s.K > 0)
        {
            Check.AtLeast("A", aLength, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K, s);
            Check.AtLeast("B", bLength, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N, s);
        }
        Check.AtLeast("C", cLength, (long)(s.M - 1) * ldc + s.N, s);
    }

    /// <summary>
    /// Version 2: packed, cache-blocked, 6x16 AVX2/FMA micro-kernel, parallel over cores (see HostGemmKernels).
    /// Summation order differs from V1 (FMA, blocks of 256 along K), so results agree to rounding, not bits.
    /// </summary>
    public static unsafe void Host_V2Blocked(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        fixed (float* pc = c) fixed (float* pa = a) fixed (float* pb = b)
            HostGemmKernels.Gemm(pc, pa, pb, s, default);
    }

    /// <summary>Version 2 with the portable <see cref="System.Numerics.Vector{T}"/> micro-kernel forced, the
    /// path taken on CPUs without 256-bit SIMD; public so tests cover it on every machine.</summary>
    public static unsafe void Host_V2BlockedPortable(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        fixed (float* pc = c) fixed (float* pa = a) fixed (float* pb = b)
            HostGemmKernels.Gemm(pc, pa, pb, s, default, portable: true);
    }

    /// <summary>Version 2 with its first kernel for few rows times Bᵀ (V1 of the thin path, 8-row padded), kept beside
    /// the default thin kernel for tests and benchmarks; other shapes run exactly as <see cref="Host_V2Blocked"/>.</summary>
    public static unsafe void Host_V2BlockedThinV1(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        fixed (float* pc = c) fixed (float* pa = a) fixed (float* pb = b)
            HostGemmKernels.Gemm(pc, pa, pb, s, default, thinV1: true);
    }

    /// <summary>Version 1: triple loop with double-free float accumulation. The specification.</summary>
    public static void Host_V1Naive(Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b, GemmShape s)
    {
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        CheckHostArgs(c.Length, a.Length, b.Length, s);
        for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++)
        {
            float acc = 0f;
            for (int p = 0; p < s.K; p++)
            {
                float av = s.TransA ? a[p * lda + i] : a[i * lda + p];
                float bv = s.TransB ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            float prev = s.Beta == 0f ? 0f : s.Beta * c[i * ldc + j];
            c[i * ldc + j] = s.Alpha * acc + prev;
        }
    }
}




// ===== ILGPU kernels =====

/// <summary>GEMM kernel versions, selectable by name (bench verb, self-test).</summary>
public enum GemmVersion
{
    /// <summary>One thread per element of C, reading A and B from global memory. The reference kernel.</summary>
    V1Naive,
    /// <summary>64 x 64 tiles of C per 256-thread group, 16-deep slices of A and B in shared memory, 4 x 4 register block per thread.</summary>
    V2Tiled,
    /// <summary>
    /// 128 x 128 tiles of C per 256-thread group, 8 x 8 register block per thread read as 16-byte vectors from
    /// shared memory (4 shared loads per 64 FMAs), 8-deep slices double-buffered in shared memory with the next slice
    /// prefetched into registers, 16-byte global loads where the leading dimension and view offset allow them.
    /// </summary>
    V3Tiled128,
    /// <summary>Tensor cores, inputs rounded to tf32 (mma.m16n8k8), fp32 accumulation; CUDA compute capability 8.0+ only (see <see cref="GemmMmaGpu"/>).</summary>
    V4MmaTf32,
    /// <summary>Tensor cores, inputs rounded to fp16 (mma.m16n8k16), fp32 accumulation; CUDA compute capability 8.0+ only.</summary>
    V4MmaF16,
    /// <summary>Tensor cores, inputs rounded to bf16 (mma.m16n8k16), fp32 accumulation; CUDA compute capability 8.0+ only.</summary>
    V4MmaBf16,
}

/// <summary>
/// Kernel arguments of a GEMM with an optional epilogue: C = alpha op(A) op(B) + beta C (+ bias[j]) (then ReLU).
/// Ints instead of bools: flags in kernel parameter structs must be blittable on every backend.
/// </summary>
internal readonly struct GemmArgs
{
    public readonly int M, N, K, Lda, Ldb, Ldc, TransA, TransB, HasBias, Relu;
    public readonly float Alpha, Beta;

    public GemmArgs(GemmShape s, bool hasBias, bool relu)
    {
        M = s.M; N = s.N; K = s.K;
        Lda = s.LdaOrDefault; Ldb = s.LdbOrDefault; Ldc = s.LdcOrDefault;
        TransA = s.TransA ? 1 : 0; TransB = s.TransB ? 1 : 0;
        HasBias = hasBias ? 1 : 0; Relu = relu ? 1 : 0;
        Alpha = s.Alpha; Beta = s.Beta;
    }
}

/// <summary>
/// Single-precision GEMM on an ILGPU accelerator, row-major with BLAS conventions (see <see cref="GemmShape"/>).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class GemmGpu : IDisposable
{
    private const int Tile = 64, TileK = 16, Threads = Accelerators.TiledGroupSize;

    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> _naive;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>? _tiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int>? _tiled128;
    // Stands in for "no bias": some backends reject empty views as kernel arguments.
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _noBias;
    // Tensor-core versions: only where inline PTX mma runs (CUDA, compute capability 8.0+), and loaded on their first
    // use, so that a driver refusing their PTX fails the mma versions only, never the fp32 ones.
    private readonly bool _hasMma;
    private GemmMmaGpu? _mma;

    public GemmGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _naive = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(NaiveKernel);
        if (accelerator.MaxNumThreadsPerGroup >= Threads)
        {
            _tiled = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(TiledKernel);
            _tiled128 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs, int>(TiledV3Kernel);
        }
        _noBias = accelerator.Allocate1D<float>(1);
        _hasMma = Precisions.HasTensorCores(accelerator);
    }

    /// <summary>Whether the tensor-core versions (V4Mma*) run on this accelerator.</summary>
    public bool HasMma => _hasMma;

    /// <summary>The fastest version this accelerator can run.</summary>
    public GemmVersion DefaultVersion => _tiled128 != null ? GemmVersion.V3Tiled128 : GemmVersion.V1Naive;

    /// <summary>C = alpha op(A) op(B) + beta C with the default version.</summary>
    public void Run(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, GemmShape s)
        => Launch(DefaultVersion, c, a, b, _noBias.View, hasBias: false, relu: false, s);

    /// <summary>C = alpha op(A) op(B) + beta C with the named version.</summary>
    public void Run(GemmVersion version, ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, GemmShape s)
        => Launch(version, c, a, b, _noBias.View, hasBias: false, relu: false, s);

    /// <summary>C = alpha op(A) op(B) + beta C + bias[j] (bias: (N)), then ReLU if asked: the fused linear-layer epilogue.</summary>
    public void RunWithBias(GemmVersion version, ArrayView<float> c, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> bias, GemmShape s, bool relu)
    {
        Check.Length("bias", bias.Length, s.N, s);
        Launch(version, c, a, b, bias, hasBias: true, relu, s);
    }

    private void Launch(GemmVersion version, ArrayView<float> c, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> bias, bool hasBias, bool relu, GemmShape s)
    {
        if (s.M <= 0 || s.N <= 0 || s.K <= 0)
            throw new ArgumentException($"gemm: M, N, K must be positive, got {s}");
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        if (lda < (s.TransA ? s.M : s.K) || ldb < (s.TransB ? s.K : s.N) || ldc < s.N)
            throw new ArgumentException($"gemm: leading dimension too small for {s}");
        Check.AtLeast("A", a.Length, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K, s);
        Check.AtLeast("B", b.Length, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N, s);
        Check.AtLeast("C", c.Length, (long)(s.M - 1) * ldc + s.N, s);
        var args = new GemmArgs(s, hasBias, relu);
        switch (version)
        {
            case GemmVersion.V1Naive:
            {
                var gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
                _naive(Accelerators.GridStride(_acc, (long)s.M * s.N, gs), c, a, b, bias, args);
                break;
            }
            case GemmVersion.V2Tiled:
                if (_tiled == null) Accelerators.RequireTiledGroup(_acc, "gemm V2Tiled");
                // Columns of C on X (up to 2^31-1 groups), rows on Y (65535 on CUDA: M up to 4.1M).
                var grid = new Index2D((s.N + Tile - 1) / Tile, (s.M + Tile - 1) / Tile);
                _tiled!(new KernelConfig(grid, new Index2D(Threads, 1)), c, a, b, bias, args);
                break;
            case GemmVersion.V3Tiled128:
            {
                if (_tiled128 == null) Accelerators.RequireTiledGroup(_acc, "gemm V3Tiled128");
                const int T = RegisterTile8x8.Tile;
                // 16-byte accesses need the view to start at a multiple of 4 floats and rows 4 floats apart.
                int vec = (Accelerators.Vector4Aligned(a, lda) ? 1 : 0) | (Accelerators.Vector4Aligned(b, ldb) ? 2 : 0)
                        | (Accelerators.Vector4Aligned(c, ldc) ? 4 : 0);
                var grid128 = new Index2D((s.N + T - 1) / T, (s.M + T - 1) / T);
                _tiled128!(new KernelConfig(grid128, new Index2D(Threads, 1)), c, a, b, bias, args, vec);
                break;
            }
            case GemmVersion.V4MmaTf32 or GemmVersion.V4MmaF16 or GemmVersion.V4MmaBf16:
                if (!_hasMma)
                    throw new NotSupportedException($"gemm {version}: {Precisions.WhyNot(GemmMmaGpu.PrecisionOf(version), _acc)}; tensor-core versions need a CUDA GPU of compute capability 8.0 or newer");
                (_mma ??= new GemmMmaGpu(_acc)).Launch(version, c, a, b, bias, args);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(version), version, "gemm: unknown version");
        }
    }

    public void Dispose() => _noBias.Dispose();

    /// <summary>Reference kernel: grid-stride over C's elements, same summation order as <see cref="Gemm.Host_V1Naive"/>.</summary>
    private static void NaiveKernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
    {
        long total = (long)g.M * g.N;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            int i = (int)(e / g.N), j = (int)(e - (long)i * g.N);
            float acc = 0f;
            for (int p = 0; p < g.K; p++)
            {
                float av = g.TransA != 0 ? a[(long)p * g.Lda + i] : a[(long)i * g.Lda + p];
                float bv = g.TransB != 0 ? b[(long)j * g.Ldb + p] : b[(long)p * g.Ldb + j];
                acc += av * bv;
            }
            Store(c, bias, g, i, j, acc);
        }
    }

    /// <summary>Epilogue shared by both versions: alpha, beta (C not read when beta is 0, as in BLAS), bias, ReLU.</summary>
    private static void Store(ArrayView<float> c, ArrayView<float> bias, GemmArgs g, int i, int j, float acc)
    {
        long ci = (long)i * g.Ldc + j;
        float v = g.Alpha * acc + (g.Beta == 0f ? 0f : g.Beta * c[ci]);
        if (g.HasBias != 0) v += bias[j];
        if (g.Relu != 0 && v < 0f) v = 0f;
        c[ci] = v;
    }

    /// <summary>
    /// Tiled kernel. Group (bx, by) owns C[by*64 .. +64, bx*64 .. +64]; thread t = (tx = t % 16, ty = t / 16)
    /// owns rows ty + 16 ii and columns tx + 16 jj (ii, jj in 0..3): strided so that a warp's shared-memory
    /// reads are broadcasts (A) or 16 consecutive words (B), and its stores to C are contiguous runs.
    /// Each 16-deep slice: As (16, 64) = op(A) slice transposed, Bs (16, 64) = op(B) slice; loads are
    /// coalesced along whichever dimension is contiguous in memory (uniform branch on the transpose flags)
    /// and zero-filled past the edges, so no size needs to be a multiple of the tile.
    /// </summary>
    private static void TiledKernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g)
    {
        var As = SharedMemory.Allocate<float>(TileK * Tile);
        var Bs = SharedMemory.Allocate<float>(TileK * Tile);
        int t = Group.IdxX, tx = t % 16, ty = t / 16;
        int row0 = Grid.IdxY * Tile, col0 = Grid.IdxX * Tile;

        var acc = new RegisterTile();

        for (int k0 = 0; k0 < g.K; k0 += TileK)
        {
            if (g.TransA == 0)
            {
                // A (M, K): k contiguous, so consecutive threads take consecutive k.
                int p = t % TileK, gk = k0 + p;
                for (int r = 0; r < 4; r++)
                {
                    int i = t / TileK + 16 * r, gi = row0 + i;
                    As[p * Tile + i] = gi < g.M && gk < g.K ? a[(long)gi * g.Lda + gk] : 0f;
                }
            }
            else
            {
                // A stored (K, M): m contiguous.
                int i = t % Tile, gi = row0 + i;
                for (int r = 0; r < 4; r++)
                {
                    int p = t / Tile + 4 * r, gk = k0 + p;
                    As[p * Tile + i] = gi < g.M && gk < g.K ? a[(long)gk * g.Lda + gi] : 0f;
                }
            }
            if (g.TransB == 0)
            {
                // B (K, N): n contiguous.
                int j = t % Tile, gj = col0 + j;
                for (int r = 0; r < 4; r++)
                {
                    int p = t / Tile + 4 * r, gk = k0 + p;
                    Bs[p * Tile + j] = gj < g.N && gk < g.K ? b[(long)gk * g.Ldb + gj] : 0f;
                }
            }
            else
            {
                // B stored (N, K): k contiguous.
                int p = t % TileK, gk = k0 + p;
                for (int r = 0; r < 4; r++)
                {
                    int j = t / TileK + 16 * r, gj = col0 + j;
                    Bs[p * Tile + j] = gj < g.N && gk < g.K ? b[(long)gj * g.Ldb + gk] : 0f;
                }
            }
            Group.Barrier();

            acc.Accumulate(As, Bs, ty, tx);
            Group.Barrier();
        }

        StoreRow(c, bias, g, row0 + ty, col0 + tx, acc.C00, acc.C01, acc.C02, acc.C03);
        StoreRow(c, bias, g, row0 + ty + 16, col0 + tx, acc.C10, acc.C11, acc.C12, acc.C13);
        StoreRow(c, bias, g, row0 + ty + 32, col0 + tx, acc.C20, acc.C21, acc.C22, acc.C23);
        StoreRow(c, bias, g, row0 + ty + 48, col0 + tx, acc.C30, acc.C31, acc.C32, acc.C33);
    }

    private static void StoreRow(ArrayView<float> c, ArrayView<float> bias, GemmArgs g, int i, int j,
        float v0, float v1, float v2, float v3)
    {
        if (i >= g.M) return;
        if (j < g.N) Store(c, bias, g, i, j, v0);
        if (j + 16 < g.N) Store(c, bias, g, i, j + 16, v1);
        if (j + 32 < g.N) Store(c, bias, g, i, j + 32, v2);
        if (j + 48 < g.N) Store(c, bias, g, i, j + 48, v3);
    }

    /// <summary>
    /// Tiled kernel, version 3. Group (bx, by) owns C[by*128 .. +128, bx*128 .. +128]; thread t owns the 8 x 8 block
    /// described at <see cref="RegisterTile8x8"/>. Per 8-deep slice: As (8, 132) = op(A) slice transposed, Bs (8, 132)
    /// = op(B) slice, two of each (double buffer) so one barrier per slice suffices: while the group multiplies one
    /// half, each thread holds the next slice's 4 + 4 elements in registers (loaded before the multiply, so the
    /// global latency hides behind 512 FMAs) and stores them into the other half after it. A thread loads 4 elements
    /// along whichever dimension is contiguous in memory (uniform branch on the transpose flags), 16 bytes at once when
    /// <paramref name="vec"/> allows (bit 0: A, bit 1: B, bit 2: C), zero-filled past the edges. Offsets are 64-bit and
    /// advance by addition: no division anywhere.
    /// </summary>
    private static void TiledV3Kernel(ArrayView<float> c, ArrayView<float> a, ArrayView<float> b, ArrayView<float> bias, GemmArgs g, int vec)
    {
        const int T = RegisterTile8x8.Tile, TK = RegisterTile8x8.TileK, S = RegisterTile8x8.SliceFloats;
        var As = SharedMemory.Allocate<float>(2 * S);
        var Bs = SharedMemory.Allocate<float>(2 * S);
        var As4 = As.Cast<Float4>();
        var Bs4 = Bs.Cast<Float4>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        int t = Group.IdxX, tx = t & 15, ty = t >> 4;
        int row0 = Grid.IdxY * T, col0 = Grid.IdxX * T;
        bool vecA = (vec & 1) != 0, vecB = (vec & 2) != 0;

        // A (M, K) row-major: 4 consecutive k of row t/2; A stored (K, M): 4 consecutive m of k-row t/32.
        bool aK = g.TransA == 0;
        int aMn = aK ? t >> 1 : (t & 31) * 4, aKk = aK ? (t & 1) * 4 : t >> 5, aRow = row0 + aMn;
        long oA = aK ? (long)aRow * g.Lda + aKk : (long)aKk * g.Lda + aRow;
        long stepA = aK ? TK : (long)TK * g.Lda;
        // B stored (N, K): 4 consecutive k of column t/2; B (K, N): 4 consecutive n of k-row t/32.
        bool bK = g.TransB != 0;
        int bMn = bK ? t >> 1 : (t & 31) * 4, bKk = bK ? (t & 1) * 4 : t >> 5, bCol = col0 + bMn;
        long oB = bK ? (long)bCol * g.Ldb + bKk : (long)bKk * g.Ldb + bCol;
        long stepB = bK ? TK : (long)TK * g.Ldb;

        var fa = TileLoad.Load4(a, a4, oA, TileLoad.Count(aK, aRow, g.M, aKk, g.K), vecA);
        var fb = TileLoad.Load4(b, b4, oB, TileLoad.Count(bK, bCol, g.N, bKk, g.K), vecB);
        TileLoad.Store(As, As4, 0, aK, aKk, aMn, fa);
        TileLoad.Store(Bs, Bs4, 0, bK, bKk, bMn, fb);
        Group.Barrier();

        var acc = new RegisterTile8x8();
        int cur = 0;
        for (int k0 = 0; k0 < g.K; k0 += TK)
        {
            int k1 = k0 + TK;
            bool more = k1 < g.K;
            if (more)
            {
                oA += stepA;
                oB += stepB;
                fa = TileLoad.Load4(a, a4, oA, TileLoad.Count(aK, aRow, g.M, k1 + aKk, g.K), vecA);
                fb = TileLoad.Load4(b, b4, oB, TileLoad.Count(bK, bCol, g.N, k1 + bKk, g.K), vecB);
            }
            acc.Accumulate(As4, Bs4, cur * (S / 4), ty, tx);
            if (more)
            {
                int next = (cur ^ 1) * S;
                TileLoad.Store(As, As4, next, aK, aKk, aMn, fa);
                TileLoad.Store(Bs, Bs4, next, bK, bKk, bMn, fb);
            }
            Group.Barrier();
            cur ^= 1;
        }

        var sink = new TiledV3Sink(c, bias, g, row0, col0, (vec & 4) != 0);
        acc.Drain(ref sink, ty, tx);
    }

    /// <summary>Epilogue of <see cref="TiledV3Kernel"/>: 4 consecutive elements of a row of C, one 16-byte access
    /// when C allows it and all 4 are inside N, else element by element through <see cref="Store"/>.</summary>
    private struct TiledV3Sink : ITileSink
    {
        private readonly ArrayView<float> _c, _bias;
        private readonly ArrayView<Float4> _c4;
        private readonly GemmArgs _g;
        private readonly int _row0, _col0;
        private readonly bool _vector;

        public TiledV3Sink(ArrayView<float> c, ArrayView<float> bias, GemmArgs g, int row0, int col0, bool vector)
        {
            _c = c; _bias = bias; _c4 = c.Cast<Float4>(); _g = g; _row0 = row0; _col0 = col0; _vector = vector;
        }

        public void Row(int row, int col, Float4 v)
        {
            int i = _row0 + row, j = _col0 + col;
            if (i >= _g.M) return;
            if (_vector & j + 4 <= _g.N)
            {
                long ci = (long)i * _g.Ldc + j;
                var old = _g.Beta == 0f ? new Float4() : _c4[ci >> 2];
                _c4[ci >> 2] = new Float4(Finish(v.X, old.X, j), Finish(v.Y, old.Y, j + 1),
                    Finish(v.Z, old.Z, j + 2), Finish(v.W, old.W, j + 3));
                return;
            }
            if (j < _g.N) Store(_c, _bias, _g, i, j, v.X);
            if (j + 1 < _g.N) Store(_c, _bias, _g, i, j + 1, v.Y);
            if (j + 2 < _g.N) Store(_c, _bias, _g, i, j + 2, v.Z);
            if (j + 3 < _g.N) Store(_c, _bias, _g, i, j + 3, v.W);
        }

        /// <summary>The epilogue of <see cref="Store"/> on a value of C already read.</summary>
        private readonly float Finish(float acc, float old, int j)
        {
            float v = _g.Alpha * acc + (_g.Beta == 0f ? 0f : _g.Beta * old);
            if (_g.HasBias != 0) v += _bias[j];
            return _g.Relu != 0 && v < 0f ? 0f : v;
        }
    }
}
