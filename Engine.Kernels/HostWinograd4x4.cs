using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Winograd F(4x4, 3x3) convolution on the host (Lavin and Gray, "Fast Algorithms for Convolutional Neural
/// Networks", CVPR 2016, section 4.2; the matrices are the ones the paper lists, built from the interpolation
/// points 0, 1, -1, 2, -2, ∞ as the wincnn generator does): each 4x4 output tile costs 36 multiplies per (k, c)
/// instead of 144 (2.25 per output against F(2x2)'s 4).
/// <code>
///   Bᵀ = [4  0 -5  0  1  0]     G = [ 1/4     0     0  ]     Aᵀ = [1  1  1  1  1  0]
///        [0 -4 -4  1  1  0]         [-1/6  -1/6  -1/6 ]          [0  1 -1  2 -2  0]
///        [0  4 -4 -1  1  0]         [-1/6   1/6  -1/6 ]          [0  1  1  4  4  0]
///        [0 -2 -1  2  1  0]         [ 1/24  1/12  1/6 ]          [0  1 -1  8 -8  1]
///        [0  2 -1 -2  1  0]         [ 1/24 -1/12  1/6 ]
///        [0  4  0 -5  0  1]         [ 0     0     1   ]
///   U[k,c] = G g[k,c] Gᵀ        (6x6, g = the 3x3 filter)
///   V[c,t] = Bᵀ d[c,t] B        (6x6, d = the 6x6 input patch of tile t, rows 4ty-1.., cols 4tx-1.., 0 outside)
///   M_ξ    = U_ξ · V_ξ          for each of the 36 positions ξ: a (K x C)·(C x tiles) GEMM
///   Y[k,t] = Aᵀ M[k,t] A        (4x4 outputs; those past OH or OW are dropped), + bias, then ReLU
/// </code>
/// The same structure as F(2x2): tiles numbered over the batch, chunks of T tiles per task, V and M in the GEMM's
/// packed-B layout (panels of 16 tiles), vector lanes over 8 neighbouring tiles of one tile row. Interior groups
/// read 6 input rows in place and transpose 4-float column groups into lanes; groups of one tile row touching
/// the image's left or right edge (or rows above or below it) copy their 6 rows into a zero-padded buffer first;
/// groups that cross a tile row or an image go through a scalar gather. When V and M of the whole batch are small
/// (<see cref="WholeBatchMaxFloats"/>: VGG16's 28² and 14² layers at batch 8), the batch is one chunk shared by
/// all cores, so U is read once instead of once per chunk; except for small filters over many tiles, which run in
/// chunks of 32 tiles (<see cref="SmallFilterChannels"/>).
/// </summary>
internal static unsafe partial class HostWinograd
{
    const int Positions4 = 36;

    /// <summary>
    /// Tiles per chunk for F(4x4): a multiple of 16, at most 256, about 2 chunks per core, V + M (36·(C + K)·T
    /// floats) at most 16 MiB per thread. Every chunk streams all of U (36 MiB at C = K = 512), so chunks are
    /// fewer and bigger than F(2x2)'s.
    /// </summary>
    static int ChunkTiles4x4(long totalTiles, int c, int k)
    {
        int threads = Environment.ProcessorCount;
        long maxPanels = Math.Clamp((1 << 22) / (Positions4 * (c + k)) / NR, 1, 16);
        if ((long)c * k <= SmallFilterChannels) maxPanels = Math.Min(maxPanels, SmallFilterPanels);
        return (int)Math.Clamp((totalTiles + 2L * threads * NR - 1) / (2L * threads * NR), 1, maxPanels) * NR;
    }

    /// <summary>
    /// Up to this C·K (U at most 4.7 MiB: VGG16's conv1_2 to conv3_1, ResNet18's first two stages), chunks are
    /// <see cref="SmallFilterPanels"/> panels of tiles: re-reading U for each chunk costs less than V and M of a
    /// 256-tile chunk (18 KiB per tile at C = K = 64, 4.7 MiB per thread) falling out of L2 between the input
    /// transform, the 36 GEMMs and the output transform. Larger filters keep the big chunks that spread U's traffic.
    /// The chunking does not change any output's summation order.
    /// </summary>
    const long SmallFilterChannels = 128 * 256;
    const int SmallFilterPanels = 2;

    /// <summary>Largest V + M (floats) for which <see cref="Forward4x4"/> runs the batch as one shared chunk.</summary>
    const long WholeBatchMaxFloats = 16L << 20;

    [ThreadStatic] static long[]? t_offsets;

    static long* ThreadOffsets(long count)
    {
        if (t_offsets == null || t_offsets.Length < count)
            t_offsets = GC.AllocateUninitializedArray<long>(checked((int)count), pinned: true);
        return (long*)Unsafe.AsPointer(ref t_offsets[0]);
    }

    /// <summary>Floats of U (the transformed filters) for <see cref="Forward4x4"/>, 64-byte alignment slack included.</summary>
    internal static int FilterFloats4x4(ConvShape s) => checked(Positions4 * HostGemmKernels.PaddedRows(s.K) * s.C + 16);

    /// <summary>U of <paramref name="w"/> into <paramref name="u"/> (at its first 64-byte boundary): what a caller may keep
    /// across calls while the weights do not change, and pass to <see cref="Forward4x4"/>.</summary>
    internal static void TransformFilters4x4(float* u, float* w, ConvShape s) => FilterTransform4x4(Align(u), w, s.K, s.C);

    static float* Align(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    /// <param name="uPrepared">U from <see cref="TransformFilters4x4"/> for these weights, or null to transform them here.</param>
    internal static void Forward4x4(float* y, float* x, float* w, float* b, ConvShape s, bool relu, bool portable, float* uPrepared = null)
    {
        int C = s.C, K = s.K, mPad = HostGemmKernels.PaddedRows(K);
        int tilesH = (s.OutH + 3) / 4, tilesW = (s.OutW + 3) / 4;
        long total = (long)s.N * tilesH * tilesW;
        // U: 36 packed A matrices (mPad x C each, HostGemmKernels.PackA layout). Pooled: 36 MiB at C = K = 512.
        float[] uRaw = uPrepared != null ? [] : System.Buffers.ArrayPool<float>.Shared.Rent(FilterFloats4x4(s));
        var uHandle = System.Runtime.InteropServices.GCHandle.Alloc(uRaw, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            float* u;
            if (uPrepared != null) u = Align(uPrepared);
            else
            {
                u = (float*)((uHandle.AddrOfPinnedObject() + 63) & ~(nint)63);
                FilterTransform4x4(u, w, K, C);
            }

            nint up = (nint)u, yp = (nint)y, xp = (nint)x, bp = (nint)b;
            int threads = Environment.ProcessorCount;
            long wholeFloats = (long)Positions4 * (C + K) * ((total + NR - 1) / NR * NR);
            // Small filters over many tiles (VGG16's 224² and 112² layers at batch 1) run in chunks too: V and M of the
            // whole batch (58 MiB at conv1_2) would go to memory and back between phases, while U is cheap to re-read.
            // With fewer than 8 chunks per core the chunks would not balance across cores.
            bool chunkedSmall = (long)C * K <= SmallFilterChannels
                && (total + SmallFilterPanels * NR - 1) / (SmallFilterPanels * NR) >= 8L * threads;
            if (threads > 1 && wholeFloats <= WholeBatchMaxFloats && s.ForwardFlops >= 4e6 && !chunkedSmall)
            {
                // Few tiles (small images): all of them in one chunk, V and M shared, each phase split across cores
                // (input channels, then positions, then output channels), so U is read once rather than per chunk.
                int T = (int)((total + NR - 1) / NR * NR);
                float[] vmRaw = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)wholeFloats + 16));
                var vmHandle = System.Runtime.InteropServices.GCHandle.Alloc(vmRaw, System.Runtime.InteropServices.GCHandleType.Pinned);
                try
                {
                    nint vp = (vmHandle.AddrOfPinnedObject() + 63) & ~(nint)63, mp = vp + (nint)((long)Positions4 * C * T * sizeof(float));
                    int parts = 4 * threads;
                    Parallel.For(0, parts, i => InputTransform4x4((float*)vp, (float*)xp, s, 0, T, tilesH, tilesW, total, C * i / parts, C * (i + 1) / parts));
                    Parallel.For(0, Positions4, xi => PositionGemms((float*)up, (float*)vp, (float*)mp, xi, xi + 1, C, K, T, portable));
                    Parallel.For(0, parts, i => OutputTransform4x4((float*)yp, (float*)mp, (float*)bp, s, relu, 0, T, tilesH, tilesW, total, K * i / parts, K * (i + 1) / parts));
                }
                finally
                {
                    vmHandle.Free();
                    System.Buffers.ArrayPool<float>.Shared.Return(vmRaw);
                }
                return;
            }
            {
                int T = ChunkTiles4x4(total, C, K);
                long chunks = (total + T - 1) / T;
                void Chunk(long ch)
                {
                    float* v = ThreadWork((long)Positions4 * (C + K) * T); // V (36, T/16 panels, C, 16) then M (36, K, T)
                    float* m = v + (long)Positions4 * C * T;
                    long g0 = ch * T;
                    InputTransform4x4(v, (float*)xp, s, g0, T, tilesH, tilesW, total, 0, C);
                    PositionGemms((float*)up, v, m, 0, Positions4, C, K, T, portable);
                    OutputTransform4x4((float*)yp, m, (float*)bp, s, relu, g0, T, tilesH, tilesW, total, 0, K);
                }
                if (threads == 1 || chunks == 1 || s.ForwardFlops < 4e6)
                    for (long ch = 0; ch < chunks; ch++) Chunk(ch);
                else
                    Parallel.For(0L, chunks, Chunk);
            }
        }
        finally
        {
            uHandle.Free();
            if (uPrepared == null) System.Buffers.ArrayPool<float>.Shared.Return(uRaw);
        }
    }

    /// <summary>
    /// u: 36 packed A matrices, U_ξ[k, c] = (G g[k,c] Gᵀ)_ξ with w (K, C, 3, 3), each written straight into
    /// <see cref="HostGemmKernels.PackA"/>'s layout (k-block pc of depth BlockDepth(C) at pc·mPad; in it, row panel
    /// k/6 at (k/6)·6·kc, element (c - pc, k % 6) at (c - pc)·6 + k % 6; rows past K zero). Computed in double,
    /// rounded once. One task per slice of row panels.
    /// </summary>
    static void FilterTransform4x4(float* u, float* w, int K, int C)
    {
        int mPad = HostGemmKernels.PaddedRows(K), panels = mPad / MR;
        int parts = (long)K * C < 1 << 14 ? 1 : Math.Min(panels, 4 * Environment.ProcessorCount);
        nint up = (nint)u, wp = (nint)w;
        if (parts == 1) FilterTransform4x4Panels((float*)up, (float*)wp, K, C, 0, panels);
        else Parallel.For(0, parts, i => FilterTransform4x4Panels((float*)up, (float*)wp, K, C, panels * i / parts, panels * (i + 1) / parts));
    }

    /// <summary>G's rows applied to (g0, g1, g2): the 6 values of one column (or row) of G g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FilterColumn(double g0, double g1, double g2, double* o, int stride)
    {
        const double Sixth = 1.0 / 6, Twelfth = 1.0 / 12, TwentyFourth = 1.0 / 24;
        double even = g0 + g2, t = g0 * TwentyFourth + g2 * Sixth;
        o[0] = 0.25 * g0;
        o[stride] = -Sixth * (even + g1);
        o[2 * stride] = -Sixth * (even - g1);
        o[3 * stride] = t + Twelfth * g1;
        o[4 * stride] = t - Twelfth * g1;
        o[5 * stride] = g2;
    }

    static void FilterTransform4x4Panels(float* u, float* w, int K, int C, int panel0, int panel1)
    {
        // 16 channels of a row panel at a time, staged in loc (36, 16·6) and copied out as one contiguous run per
        // position: the 36 positions lie mPad·C floats apart (1 MiB at 512), the same cache set, so storing one
        // float to each per filter thrashed L1.
        const int CB = 16;
        int mPad = HostGemmKernels.PaddedRows(K), depth = HostGemmKernels.BlockDepth(C);
        long positionStride = (long)mPad * C;
        double* gg = stackalloc double[18]; // G g (6 x 3)
        double* uu = stackalloc double[36]; // (G g) Gᵀ (6 x 6)
        float* loc = stackalloc float[Positions4 * CB * MR];
        for (int panel = panel0; panel < panel1; panel++)
            for (int pc = 0; pc < C; pc += depth)
            {
                int kc = Math.Min(depth, C - pc);
                for (int cb0 = pc; cb0 < pc + kc; cb0 += CB)
                {
                    int cb = Math.Min(CB, pc + kc - cb0);
                    for (int c = cb0; c < cb0 + cb; c++)
                        for (int r = 0; r < MR; r++)
                        {
                            int k = panel * MR + r, e = (c - cb0) * MR + r;
                            if (k >= K)
                            {
                                for (int xi = 0; xi < Positions4; xi++) loc[xi * CB * MR + e] = 0f;
                                continue;
                            }
                            float* g = w + ((long)k * C + c) * 9;
                            for (int j = 0; j < 3; j++) FilterColumn(g[j], g[3 + j], g[6 + j], gg + j, 3);
                            for (int i = 0; i < 6; i++) FilterColumn(gg[3 * i], gg[3 * i + 1], gg[3 * i + 2], uu + 6 * i, 1);
                            for (int xi = 0; xi < Positions4; xi++) loc[xi * CB * MR + e] = (float)uu[xi];
                        }
                    float* dst = u + (long)pc * mPad + (long)panel * MR * kc + (long)(cb0 - pc) * MR;
                    for (int xi = 0; xi < Positions4; xi++)
                        new ReadOnlySpan<float>(loc + xi * CB * MR, cb * MR).CopyTo(new Span<float>(dst + xi * positionStride, cb * MR));
                }
            }
    }

    /// <summary>
    /// V (36, T/16, C, 16) for tiles g0 .. g0+T-1 and channels c0 .. c1-1: V[ξ][t/16][c][t%16] = (Bᵀ d[c,t] B)_ξ; tiles
    /// past the batch are 0. Channel by channel, like F(2x2)'s <see cref="InputTransform"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void InputTransform4x4(float* v, float* x, ConvShape s, long g0, int T, int tilesH, int tilesW, long total, int c0, int c1)
    {
        const int Row = 40; // padded-row buffer: 34 elements used, 36 read
        int C = s.C, H = s.H, W = s.W, groups = T / Lanes;
        long hw = (long)H * W, imageIn = C * hw, xiStride = (long)C * T;
        float* d = stackalloc float[Positions4 * Lanes];
        float* t = stackalloc float[Positions4 * Lanes];   // B-transformed rows: t[(6r + j)·8 + lane]
        float* pad = stackalloc float[6 * Row];
        // kind 0: in place, start = patch origin; kind 1: one tile row at an edge, start = image offset, iy0/ix0 the
        // patch origin; kind 2: scalar gather through offs (36 offsets per lane, -1 for 0).
        byte* kind = stackalloc byte[groups];
        long* start = stackalloc long[groups];
        int* orig = stackalloc int[2 * groups];
        long* offs = ThreadOffsets((long)groups * Positions4 * Lanes);
        bool vec = Avx2.IsSupported;
        for (int gi = 0; gi < groups; gi++)
        {
            long g = g0 + gi * Lanes;
            Decode(Math.Min(g, total - 1), tilesH, tilesW, out int n, out int ty, out int tx);
            int iy0 = 4 * ty - 1, ix0 = 4 * tx - 1;
            bool row = vec && g + Lanes <= total && tx + Lanes <= tilesW;
            bool inside = iy0 >= 0 && iy0 + 6 <= H && ix0 >= 0 && ix0 + 36 <= W;
            kind[gi] = (byte)(row ? (inside ? 0 : 1) : 2);
            start[gi] = row && inside ? n * imageIn + (long)iy0 * W + ix0 : n * imageIn;
            orig[2 * gi] = iy0; orig[2 * gi + 1] = ix0;
            if (kind[gi] != 2) continue;
            long* o = offs + gi * Positions4 * Lanes;
            EdgeOffsets(o, g, total, tilesH, tilesW, step: 4, size: 6, origin: -1, H, W, imageIn, W);
        }
        float* plane = x + c0 * hw;
        for (int c = c0; c < c1; c++, plane += hw)
            for (int gi = 0; gi < groups; gi++)
            {
                float* dst = v + (long)(gi / 2) * C * NR + (long)c * NR + (gi & 1) * Lanes;
                if (kind[gi] == 0)
                {
                    float* p0 = plane + start[gi];
                    for (int r = 0; r < 6; r++) RowTransformLoad(t + 6 * r * Lanes, p0 + (long)r * W);
                }
                else if (kind[gi] == 1)
                {
                    // Rows outside the image and columns past either edge are 0.
                    int iy0 = orig[2 * gi], ix0 = orig[2 * gi + 1];
                    int qLo = Math.Max(0, -ix0), qHi = Math.Min(36, W - ix0);
                    for (int r = 0; r < 6; r++)
                    {
                        float* pr = pad + r * Row;
                        new Span<float>(pr, Row).Clear();
                        int iy = iy0 + r;
                        if ((uint)iy < (uint)H && qHi > qLo)
                            new ReadOnlySpan<float>(plane + start[gi] + (long)iy * W + ix0 + qLo, qHi - qLo).CopyTo(new Span<float>(pr + qLo, qHi - qLo));
                        RowTransformLoad(t + 6 * r * Lanes, pr);
                    }
                }
                else
                {
                    long* o = offs + gi * Positions4 * Lanes;
                    for (int e = 0; e < Positions4 * Lanes; e++) d[e] = o[e] >= 0 ? plane[o[e]] : 0f;
                    for (int r = 0; r < 6; r++)
                    {
                        float* dr = d + 6 * r * Lanes;
                        RowTransform(t + 6 * r * Lanes, Vector256.Load(dr), Vector256.Load(dr + 8), Vector256.Load(dr + 16),
                            Vector256.Load(dr + 24), Vector256.Load(dr + 32), Vector256.Load(dr + 40));
                    }
                }
                // Bᵀ along each column of t: V_(6i + j) from t_(0..5, j).
                for (int j = 0; j < 6; j++)
                {
                    float* tj = t + j * Lanes;
                    BTransform(Vector256.Load(tj), Vector256.Load(tj + 48), Vector256.Load(tj + 96), Vector256.Load(tj + 144),
                        Vector256.Load(tj + 192), Vector256.Load(tj + 240),
                        out var r0, out var r1, out var r2, out var r3, out var r4, out var r5);
                    float* dj = dst + j * xiStride;
                    Vector256.Store(r0, dj); Vector256.Store(r1, dj + 6 * xiStride); Vector256.Store(r2, dj + 12 * xiStride);
                    Vector256.Store(r3, dj + 18 * xiStride); Vector256.Store(r4, dj + 24 * xiStride); Vector256.Store(r5, dj + 30 * xiStride);
                }
            }
    }

    /// <summary>
    /// One patch row of 8 neighbouring tiles read in place (p[0 .. 35]): lane i gets p[4i .. 4i+5], then Bᵀ along it,
    /// stored to dst[j·8 + lane]. Each 128-bit half holds 4 tiles; a 4x4 transpose per half puts column q in lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void RowTransformLoad(float* dst, float* p)
    {
        var a0 = Vector256.Create(Vector128.Load(p), Vector128.Load(p + 16));      // tiles 0, 4
        var a1 = Vector256.Create(Vector128.Load(p + 4), Vector128.Load(p + 20));  // tiles 1, 5
        var a2 = Vector256.Create(Vector128.Load(p + 8), Vector128.Load(p + 24));  // tiles 2, 6
        var a3 = Vector256.Create(Vector128.Load(p + 12), Vector128.Load(p + 28)); // tiles 3, 7
        var a4 = Vector256.Create(Vector128.Load(p + 16), Vector128.Load(p + 32)); // tiles 4, 8: columns 4, 5 of tiles 3, 7
        var lo01 = Avx.UnpackLow(a0, a1); var lo23 = Avx.UnpackLow(a2, a3);
        var hi01 = Avx.UnpackHigh(a0, a1); var hi23 = Avx.UnpackHigh(a2, a3);
        var c0 = Avx.Shuffle(lo01, lo23, 0x44); var c1 = Avx.Shuffle(lo01, lo23, 0xEE);
        var c2 = Avx.Shuffle(hi01, hi23, 0x44); var c3 = Avx.Shuffle(hi01, hi23, 0xEE);
        // Columns 4 and 5 of tile i are columns 0 and 1 of tile i + 1.
        var lo12 = Avx.UnpackLow(a1, a2); var lo34 = Avx.UnpackLow(a3, a4);
        var c4 = Avx.Shuffle(lo12, lo34, 0x44); var c5 = Avx.Shuffle(lo12, lo34, 0xEE);
        RowTransform(dst, c0, c1, c2, c3, c4, c5);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void RowTransform(float* dst, Vector256<float> d0, Vector256<float> d1, Vector256<float> d2,
        Vector256<float> d3, Vector256<float> d4, Vector256<float> d5)
    {
        BTransform(d0, d1, d2, d3, d4, d5, out var r0, out var r1, out var r2, out var r3, out var r4, out var r5);
        Vector256.Store(r0, dst); Vector256.Store(r1, dst + 8); Vector256.Store(r2, dst + 16);
        Vector256.Store(r3, dst + 24); Vector256.Store(r4, dst + 32); Vector256.Store(r5, dst + 40);
    }

    /// <summary>r = Bᵀ d for a 6-vector d (one per lane), Bᵀ as in the class comment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void BTransform(Vector256<float> d0, Vector256<float> d1, Vector256<float> d2, Vector256<float> d3,
        Vector256<float> d4, Vector256<float> d5, out Vector256<float> r0, out Vector256<float> r1, out Vector256<float> r2,
        out Vector256<float> r3, out Vector256<float> r4, out Vector256<float> r5)
    {
        var four = Vector256.Create(4f); var five = Vector256.Create(-5f); var two = Vector256.Create(2f);
        r0 = Vector256.FusedMultiplyAdd(four, d0, Vector256.FusedMultiplyAdd(five, d2, d4));
        r1 = (d3 + d4) - four * (d1 + d2);
        r2 = Vector256.FusedMultiplyAdd(four, d1 - d2, d4 - d3);
        var e = d4 - d2; var f = d3 - d1;
        r3 = Vector256.FusedMultiplyAdd(two, f, e);
        r4 = e - two * f;
        r5 = Vector256.FusedMultiplyAdd(four, d1, Vector256.FusedMultiplyAdd(five, d3, d5));
    }

    /// <summary>y = Aᵀ m for a 6-vector m (one per lane), Aᵀ as in the class comment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ATransform(Vector256<float> m0, Vector256<float> m1, Vector256<float> m2, Vector256<float> m3,
        Vector256<float> m4, Vector256<float> m5, out Vector256<float> y0, out Vector256<float> y1, out Vector256<float> y2,
        out Vector256<float> y3)
    {
        var a = m1 + m2; var b = m1 - m2; var c = m3 + m4; var d = m3 - m4;
        y0 = m0 + a + c;
        y1 = Vector256.FusedMultiplyAdd(Vector256.Create(2f), d, b);
        y2 = Vector256.FusedMultiplyAdd(Vector256.Create(4f), c, a);
        y3 = Vector256.FusedMultiplyAdd(Vector256.Create(8f), d, b) + m5;
    }

    /// <summary>
    /// y[n, k, 4ty .. 4ty+3, 4tx .. 4tx+3] = Aᵀ M[k, t] A + bias[k] (then ReLU), for tiles g0 .. g0+T-1 in the batch;
    /// output channels k0 .. k1-1; outputs past OH or OW are dropped. Channel by channel, like F(2x2)'s <see cref="OutputTransform"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void OutputTransform4x4(float* y, float* m, float* bias, ConvShape s, bool relu, long g0, int T, int tilesH, int tilesW, long total, int k0, int k1)
    {
        int K = s.K, OH = s.OutH, OW = s.OutW;
        long plane = (long)OH * OW, xiStride = (long)K * T;
        int groups = (int)Math.Min(T / Lanes, (total - g0 + Lanes - 1) / Lanes);
        long* start = stackalloc long[groups];            // fast group: offset of its first output in plane 0 of image n, plus n·K·plane; slow: -1
        long* offs = ThreadOffsets((long)groups * 16 * Lanes); // slow group: each lane's 16 output offsets in plane 0, -1 for dropped
        for (int gi = 0; gi < groups; gi++)
        {
            long g = g0 + gi * Lanes;
            Decode(g, tilesH, tilesW, out int n, out int ty, out int tx);
            bool fast = Avx2.IsSupported && g + Lanes <= total && tx + Lanes <= tilesW && 4 * ty + 3 < OH && 4 * tx + 4 * Lanes <= OW;
            start[gi] = fast ? (long)n * K * plane + (long)(4 * ty) * OW + 4 * tx : -1;
            if (fast) continue;
            long* o = offs + gi * 16 * Lanes;
            EdgeOffsets(o, g, total, tilesH, tilesW, step: 4, size: 4, origin: 0, OH, OW, (long)K * plane, OW);
        }
        float* sm = stackalloc float[24 * Lanes]; // Aᵀ M: sm[(6a + j)·8 + lane]
        float* tmp = stackalloc float[16 * Lanes];
        var zero = Vector256<float>.Zero;
        for (int k = k0; k < k1; k++)
        {
            var bk = Vector256.Create(bias[k]);
            float* mk = m + (long)k * T;
            for (int gi = 0; gi < groups; gi++)
            {
                float* mg = mk + gi * Lanes;
                for (int j = 0; j < 6; j++)
                {
                    float* mj = mg + j * xiStride;
                    ATransform(Vector256.Load(mj), Vector256.Load(mj + 6 * xiStride), Vector256.Load(mj + 12 * xiStride),
                        Vector256.Load(mj + 18 * xiStride), Vector256.Load(mj + 24 * xiStride), Vector256.Load(mj + 30 * xiStride),
                        out var s0, out var s1, out var s2, out var s3);
                    Vector256.Store(s0, sm + j * Lanes); Vector256.Store(s1, sm + (6 + j) * Lanes);
                    Vector256.Store(s2, sm + (12 + j) * Lanes); Vector256.Store(s3, sm + (18 + j) * Lanes);
                }
                for (int a = 0; a < 4; a++)
                {
                    float* sa = sm + 6 * a * Lanes;
                    ATransform(Vector256.Load(sa), Vector256.Load(sa + 8), Vector256.Load(sa + 16), Vector256.Load(sa + 24),
                        Vector256.Load(sa + 32), Vector256.Load(sa + 40), out var y0, out var y1, out var y2, out var y3);
                    y0 += bk; y1 += bk; y2 += bk; y3 += bk;
                    if (relu)
                    {
                        // Same rule as the specification (v < 0 ? 0 : v), so NaN passes through.
                        y0 = Vector256.ConditionalSelect(Vector256.LessThan(y0, zero), zero, y0);
                        y1 = Vector256.ConditionalSelect(Vector256.LessThan(y1, zero), zero, y1);
                        y2 = Vector256.ConditionalSelect(Vector256.LessThan(y2, zero), zero, y2);
                        y3 = Vector256.ConditionalSelect(Vector256.LessThan(y3, zero), zero, y3);
                    }
                    if (start[gi] >= 0)
                    {
                        StoreRow4(y + start[gi] + k * plane + (long)a * OW, y0, y1, y2, y3);
                        continue;
                    }
                    Vector256.Store(y0, tmp + 4 * a * Lanes); Vector256.Store(y1, tmp + (4 * a + 1) * Lanes);
                    Vector256.Store(y2, tmp + (4 * a + 2) * Lanes); Vector256.Store(y3, tmp + (4 * a + 3) * Lanes);
                }
                if (start[gi] >= 0) continue;
                long* o = offs + gi * 16 * Lanes;
                float* yk = y + k * plane;
                for (int e = 0; e < 16 * Lanes; e++)
                    if (o[e] >= 0) yk[o[e]] = tmp[e];
            }
        }
    }

    /// <summary>p[4i .. 4i+3] = (y0, y1, y2, y3)[lane i] for 8 tiles: one output row, 32 floats. The inverse of the
    /// input's transpose: a 4x4 transpose per 128-bit half, then the halves put in tile order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow4(float* p, Vector256<float> y0, Vector256<float> y1, Vector256<float> y2, Vector256<float> y3)
    {
        var lo01 = Avx.UnpackLow(y0, y1); var lo23 = Avx.UnpackLow(y2, y3);
        var hi01 = Avx.UnpackHigh(y0, y1); var hi23 = Avx.UnpackHigh(y2, y3);
        var o0 = Avx.Shuffle(lo01, lo23, 0x44); // tiles 0, 4
        var o1 = Avx.Shuffle(lo01, lo23, 0xEE); // tiles 1, 5
        var o2 = Avx.Shuffle(hi01, hi23, 0x44); // tiles 2, 6
        var o3 = Avx.Shuffle(hi01, hi23, 0xEE); // tiles 3, 7
        Avx.Store(p, Avx.Permute2x128(o0, o1, 0x20));
        Avx.Store(p + 8, Avx.Permute2x128(o2, o3, 0x20));
        Avx.Store(p + 16, Avx.Permute2x128(o0, o1, 0x31));
        Avx.Store(p + 24, Avx.Permute2x128(o2, o3, 0x31));
    }
}
