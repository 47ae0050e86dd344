using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Winograd F(2x2, 3x3) convolution on the host (Lavin and Gray, "Fast Algorithms for Convolutional Neural
/// Networks", CVPR 2016, section 4): each 2x2 output tile costs 16 multiplies per (k, c) instead of 36.
/// <code>
///   Bᵀ = [1  0 -1  0]     G = [ 1    0    0 ]     Aᵀ = [1  1  1  0]
///        [0  1  1  0]         [ 1/2  1/2  1/2]          [0  1 -1 -1]
///        [0 -1  1  0]         [ 1/2 -1/2  1/2]
///        [0  1  0 -1]         [ 0    0    1 ]
///   U[k,c] = G g[k,c] Gᵀ        (4x4, g = the 3x3 filter)
///   V[c,t] = Bᵀ d[c,t] B        (4x4, d = the 4x4 input patch of tile t, rows 2ty-1.., cols 2tx-1.., 0 outside)
///   M_ξ    = U_ξ · V_ξ          for each of the 16 positions ξ: a (K x C)·(C x tiles) GEMM
///   Y[k,t] = Aᵀ M[k,t] A        (2x2 outputs; those past OH or OW are dropped), + bias, then ReLU
/// </code>
/// Tiles are numbered over the whole batch (n, ty, tx) and processed in chunks of T tiles per task, so memory
/// stays at 16·(C + K)·T floats per thread whatever the batch. Within a chunk, V and M are stored in the GEMM's
/// packed-B layout (panels of 16 tiles, k-major), so the 6x16 micro-kernel reads V directly with no repacking.
/// Vector lanes run over 8 neighbouring tiles: interior groups load 4 input rows and deinterleave even/odd
/// columns; groups touching an edge, a row end or an image end go through a scalar gather.
/// </summary>
internal static unsafe partial class HostWinograd
{
    const int Lanes = 8, Positions = 16, NR = HostGemmKernels.NR, MR = HostGemmKernels.MR;

    /// <summary>The shapes this algorithm computes: dense 3x3 filters, stride 1, padding 1 on every side (output size = input size).</summary>
    internal static bool Supports(ConvShape s)
        => s.R == 3 && s.S == 3 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 1 && s.PadW == 1
           && s.PadEndH == 1 && s.PadEndW == 1 && s.IsDense;

    [ThreadStatic] static float[]? t_work;


    static float* ThreadWork(long floats)
    {
        if (t_work == null || t_work.Length < floats + 16)
            t_work = GC.AllocateUninitializedArray<float>(checked((int)(floats + 16)), pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref t_work[0]);
        return (float*)((p + 63) & ~(nint)63);
    }

    /// <summary>
    /// Tiles per chunk: a multiple of 16, at most 256, about 4 chunks per core, and V + M at most 16 MiB per thread.
    /// Every chunk streams all of U (16 MiB at C = K = 512) once, so bigger chunks cut that traffic: a 16 MiB cap
    /// instead of 4 MiB (batch 8: conv3 256 tiles instead of 128, conv4 192 instead of 64) measured 15-30% faster on
    /// conv3_x and conv4_x in back-to-back runs; a 1 MiB or 256 KiB cap was slower over conv1_2 .. conv5_x.
    /// </summary>
    static int ChunkTiles(long totalTiles, int c, int k)
    {
        int threads = Environment.ProcessorCount;
        long maxPanels = Math.Clamp((1 << 18) / (c + k) / NR, 1, 16);
        return (int)Math.Clamp(totalTiles / (4L * threads * NR), 1, maxPanels) * NR;
    }

    internal static void Forward(float* y, float* x, float* w, float* b, ConvShape s, bool relu, bool portable)
    {
        int C = s.C, K = s.K, mPad = HostGemmKernels.PaddedRows(K);
        int tilesH = (s.OutH + 1) / 2, tilesW = (s.OutW + 1) / 2;
        long total = (long)s.N * tilesH * tilesW;
        // U: 16 packed A matrices (mPad x C each, HostGemmKernels.PackA layout), one per position ξ. Pooled: at
        // C = K = 512 it is 32 MiB, better reused than mapped afresh on every call.
        float[] uRaw = System.Buffers.ArrayPool<float>.Shared.Rent(checked(Positions * mPad * C + Positions * K * C + 16));
        var uHandle = System.Runtime.InteropServices.GCHandle.Alloc(uRaw, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            float* u = (float*)((uHandle.AddrOfPinnedObject() + 63) & ~(nint)63);
            float* uPlain = u + (long)Positions * mPad * C; // (16, K, C)
            FilterTransform(uPlain, w, K, C);
            for (int xi = 0; xi < Positions; xi++)
                HostGemmKernels.PackA(u + (long)xi * mPad * C, uPlain + (long)xi * K * C, C, 1, K, C, 1f);

            int T = ChunkTiles(total, C, K);
            long chunks = (total + T - 1) / T;
            nint up = (nint)u, yp = (nint)y, xp = (nint)x, bp = (nint)b;
            void Chunk(long ch)
            {
                float* v = ThreadWork((long)Positions * (C + K) * T); // V (16, T/16 panels, C, 16) then M (16, K, T)
                float* m = v + (long)Positions * C * T;
                long g0 = ch * T;
                InputTransform(v, (float*)xp, s, g0, T, tilesH, tilesW, total);
                PositionGemms((float*)up, v, m, 0, Positions, C, K, T, portable);
                OutputTransform((float*)yp, m, (float*)bp, s, relu, g0, T, tilesH, tilesW, total);
            }
            if (Environment.ProcessorCount == 1 || chunks == 1 || s.ForwardFlops < 4e6)
                for (long ch = 0; ch < chunks; ch++) Chunk(ch);
            else
                Parallel.For(0L, chunks, Chunk);
        }
        finally
        {
            uHandle.Free();
            System.Buffers.ArrayPool<float>.Shared.Return(uRaw);
        }
    }

    /// <summary>
    /// M_ξ (K, T) = U_ξ · V_ξ for positions xi0 ≤ ξ &lt; xi1: u holds the packed A matrices (PaddedRows(K) x C each), v the
    /// packed-B panels (T/16, C, 16) of each position, m the outputs (positions, K, T). The blocked GEMM's loops, with
    /// the B panels read in place.
    /// </summary>
    static void PositionGemms(float* u, float* v, float* m, int xi0, int xi1, int C, int K, int T, bool portable)
    {
        int mPad = HostGemmKernels.PaddedRows(K), depth = HostGemmKernels.BlockDepth(C);
        for (int xi = xi0; xi < xi1; xi++)
        {
            float* a = u + (long)xi * mPad * C, vb = v + (long)xi * C * T, mc = m + (long)xi * K * T;
            for (int pc = 0; pc < C; pc += depth)
            {
                int kc = Math.Min(depth, C - pc);
                float* aBlock = a + (long)pc * mPad;
                for (int ic = 0; ic < K; ic += HostGemmKernels.MC)
                {
                    int mcRows = Math.Min(HostGemmKernels.MC, K - ic);
                    for (int jp = 0; jp < T; jp += NR)
                    {
                        float* bPanel = vb + ((long)jp * C + (long)pc * NR);
                        for (int ir = 0; ir < mcRows; ir += MR)
                        {
                            int row = ic + ir;
                            HostGemmKernels.MicroTile(kc, aBlock + (long)row * kc, bPanel, mc + (long)row * T + jp, T,
                                Math.Min(MR, K - row), NR, accumulate: pc > 0, portable);
                        }
                    }
                }
            }
        }
    }

    /// <summary>uPlain (16, K, C): U_ξ[k, c] = (G g[k,c] Gᵀ)_ξ, with w (K, C, 3, 3).</summary>
    static void FilterTransform(float* uPlain, float* w, int K, int C)
    {
        long plane = (long)K * C;
        // Split across cores for big layers: at C = K = 512 these are 262144 filters, a few ms on one core.
        int parts = plane < 1 << 16 ? 1 : Math.Min(K, 4 * Environment.ProcessorCount);
        nint up = (nint)uPlain, wp = (nint)w;
        if (parts == 1) FilterTransformRange((float*)up, (float*)wp, plane, 0, plane);
        else Parallel.For(0, parts, i => FilterTransformRange((float*)up, (float*)wp, plane, plane * i / parts, plane * (i + 1) / parts));
    }

    static void FilterTransformRange(float* uPlain, float* w, long plane, long begin, long end)
    {
        float* gg = stackalloc float[12];
        for (long kc = begin; kc < end; kc++)
        {
            float* g = w + kc * 9;
            // Gg (4 x 3), row by row: G's rows combine the filter's rows.
            for (int j = 0; j < 3; j++)
            {
                float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                gg[j] = g0;
                gg[3 + j] = 0.5f * (g0 + g1 + g2);
                gg[6 + j] = 0.5f * (g0 - g1 + g2);
                gg[9 + j] = g2;
            }
            // (Gg) Gᵀ: the same combination along each row.
            for (int i = 0; i < 4; i++)
            {
                float a = gg[3 * i], bb = gg[3 * i + 1], c = gg[3 * i + 2];
                float* u = uPlain + (long)(4 * i) * plane + kc;
                u[0] = a;
                u[plane] = 0.5f * (a + bb + c);
                u[2 * plane] = 0.5f * (a - bb + c);
                u[3 * plane] = c;
            }
        }
    }

    /// <summary>Where tile g sits: image n, tile row ty, tile column tx.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Decode(long g, int tilesH, int tilesW, out int n, out int ty, out int tx)
    {
        long perImage = (long)tilesH * tilesW;
        n = (int)(g / perImage);
        int rem = (int)(g - n * perImage);
        ty = rem / tilesW;
        tx = rem - ty * tilesW;
    }

    /// <summary>
    /// Element offsets of the <paramref name="size"/> x <paramref name="size"/> patch of each of the Lanes tiles from g on
    /// (tile (n, ty, tx) starts at row ty·step + origin, column tx·step + origin of image n), laid out (position, lane),
    /// -1 where the patch leaves the (limitH, limitW) image or the tile is past the last: the scalar path of edge tiles.
    /// </summary>
    static void EdgeOffsets(long* o, long g, long total, int tilesH, int tilesW, int step, int size, int origin,
        int limitH, int limitW, long imageStride, int rowStride)
    {
        for (int lane = 0; lane < Lanes; lane++)
        {
            long gl = g + lane;
            int ln = 0, lty = 0, ltx = 0;
            if (gl < total) Decode(gl, tilesH, tilesW, out ln, out lty, out ltx);
            for (int r = 0; r < size; r++)
                for (int q = 0; q < size; q++)
                {
                    int iy = step * lty + origin + r, ix = step * ltx + origin + q;
                    o[(size * r + q) * Lanes + lane] = gl < total && (uint)iy < (uint)limitH && (uint)ix < (uint)limitW
                        ? ln * imageStride + (long)iy * rowStride + ix : -1;
                }
        }
    }

    /// <summary>
    /// V (16, T/16, C, 16) for tiles g0 .. g0+T-1: V[ξ][t/16][c][t%16] = (Bᵀ d[c,t] B)_ξ; tiles past the batch are 0.
    /// Channel by channel, so each input plane is read along its rows while the chunk's groups pass. (Group by
    /// group, touching all C planes per group, measured 20-35% slower per busy core on conv1_2, whose 224²
    /// planes are a multiple of 4 KiB apart and so share L1 sets.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void InputTransform(float* v, float* x, ConvShape s, long g0, int T, int tilesH, int tilesW, long total)
    {
        int C = s.C, H = s.H, W = s.W, groups = T / Lanes;
        long hw = (long)H * W, imageIn = C * hw, xiStride = (long)C * T;
        float* d = stackalloc float[Positions * Lanes];
        long* start = stackalloc long[groups];                // fast group: offset of its patch origin; slow: -1
        long* offs = stackalloc long[groups * Positions * Lanes]; // slow group: each lane's 16 element offsets, -1 for 0
        for (int gi = 0; gi < groups; gi++)
        {
            long g = g0 + gi * Lanes;
            Decode(Math.Min(g, total - 1), tilesH, tilesW, out int n, out int ty, out int tx);
            int iy0 = 2 * ty - 1, ix0 = 2 * tx - 1;
            bool fast = Avx2.IsSupported && g + Lanes <= total && tx + Lanes <= tilesW
                        && iy0 >= 0 && iy0 + 3 < H && ix0 >= 0 && ix0 + 2 * Lanes + 1 < W;
            start[gi] = fast ? n * imageIn + (long)iy0 * W + ix0 : -1;
            if (fast) continue;
            long* o = offs + gi * Positions * Lanes;
            EdgeOffsets(o, g, total, tilesH, tilesW, step: 2, size: 4, origin: -1, H, W, imageIn, W);
        }
        float* plane = x;
        for (int c = 0; c < C; c++, plane += hw)
            for (int gi = 0; gi < groups; gi++)
            {
                float* dst = v + (long)(gi / 2) * C * NR + (long)c * NR + (gi & 1) * Lanes;
                if (start[gi] >= 0)
                {
                    float* p0 = plane + start[gi];
                    Load4(p0, out var d00, out var d01, out var d02, out var d03);
                    Load4(p0 + W, out var d10, out var d11, out var d12, out var d13);
                    Load4(p0 + 2 * W, out var d20, out var d21, out var d22, out var d23);
                    Load4(p0 + 3 * W, out var d30, out var d31, out var d32, out var d33);
                    TransformStore(dst, xiStride, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33);
                    continue;
                }
                long* o = offs + gi * Positions * Lanes;
                for (int e = 0; e < Positions * Lanes; e++) d[e] = o[e] >= 0 ? plane[o[e]] : 0f;
                TransformStore(dst, xiStride,
                    Vector256.Load(d), Vector256.Load(d + 8), Vector256.Load(d + 16), Vector256.Load(d + 24),
                    Vector256.Load(d + 32), Vector256.Load(d + 40), Vector256.Load(d + 48), Vector256.Load(d + 56),
                    Vector256.Load(d + 64), Vector256.Load(d + 72), Vector256.Load(d + 80), Vector256.Load(d + 88),
                    Vector256.Load(d + 96), Vector256.Load(d + 104), Vector256.Load(d + 112), Vector256.Load(d + 120));
            }
    }

    /// <summary>
    /// One patch row for 8 neighbouring tiles: lane i gets p[2i], p[2i+1], p[2i+2], p[2i+3] (p[0 .. 17] are read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Load4(float* p, out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3)
    {
        Deinterleave(p, out c0, out c1);
        Deinterleave(p + 2, out c2, out c3);
    }

    /// <summary>p[0 .. 15] split into its even (p[2i]) and odd (p[2i+1]) elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Deinterleave(float* p, out Vector256<float> even, out Vector256<float> odd)
    {
        var a0 = Avx.LoadVector256(p);
        var a1 = Avx.LoadVector256(p + 8);
        // Shuffle takes elements 0, 2 (or 1, 3) of each 128-bit half; Permute4x64 puts the halves back in order.
        even = Avx2.Permute4x64(Avx.Shuffle(a0, a1, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
        odd = Avx2.Permute4x64(Avx.Shuffle(a0, a1, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
    }

    /// <summary>Bᵀ d B for 8 tiles (d_rq = patch element (r, q), one tile per lane); position ξ = 4i + j goes to dst + ξ·stride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void TransformStore(float* dst, long stride,
        Vector256<float> d00, Vector256<float> d01, Vector256<float> d02, Vector256<float> d03,
        Vector256<float> d10, Vector256<float> d11, Vector256<float> d12, Vector256<float> d13,
        Vector256<float> d20, Vector256<float> d21, Vector256<float> d22, Vector256<float> d23,
        Vector256<float> d30, Vector256<float> d31, Vector256<float> d32, Vector256<float> d33)
    {
        // Rows: t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3.
        var t00 = d00 - d20; var t01 = d01 - d21; var t02 = d02 - d22; var t03 = d03 - d23;
        var t10 = d10 + d20; var t11 = d11 + d21; var t12 = d12 + d22; var t13 = d13 + d23;
        var t20 = d20 - d10; var t21 = d21 - d11; var t22 = d22 - d12; var t23 = d23 - d13;
        var t30 = d10 - d30; var t31 = d11 - d31; var t32 = d12 - d32; var t33 = d13 - d33;
        // Columns: the same combination.
        StoreRow(dst, stride, t00, t01, t02, t03);
        StoreRow(dst + 4 * stride, stride, t10, t11, t12, t13);
        StoreRow(dst + 8 * stride, stride, t20, t21, t22, t23);
        StoreRow(dst + 12 * stride, stride, t30, t31, t32, t33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow(float* dst, long stride, Vector256<float> t0, Vector256<float> t1, Vector256<float> t2, Vector256<float> t3)
    {
        Vector256.Store(t0 - t2, dst);
        Vector256.Store(t1 + t2, dst + stride);
        Vector256.Store(t2 - t1, dst + 2 * stride);
        Vector256.Store(t1 - t3, dst + 3 * stride);
    }

    /// <summary>
    /// y[n, k, 2ty .. 2ty+1, 2tx .. 2tx+1] = Aᵀ M[k, t] A + bias[k] (then ReLU), for tiles g0 .. g0+T-1 in the batch.
    /// Channel by channel, so each output plane is written along its rows (for the same reason as the input).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void OutputTransform(float* y, float* m, float* bias, ConvShape s, bool relu, long g0, int T, int tilesH, int tilesW, long total)
    {
        int K = s.K, OH = s.OutH, OW = s.OutW;
        long plane = (long)OH * OW, xiStride = (long)K * T;
        int groups = (int)Math.Min(T / Lanes, (total - g0 + Lanes - 1) / Lanes);
        long* start = stackalloc long[groups]; // fast group: offset of its first output in image n's plane 0, plus n·K·plane; slow: -1
        for (int gi = 0; gi < groups; gi++)
        {
            long g = g0 + gi * Lanes;
            Decode(g, tilesH, tilesW, out int n, out int ty, out int tx);
            bool fast = Avx2.IsSupported && g + Lanes <= total && tx + Lanes <= tilesW && 2 * ty + 1 < OH && 2 * tx + 2 * Lanes <= OW;
            start[gi] = fast ? (long)n * K * plane + (long)(2 * ty) * OW + 2 * tx : -1;
        }
        float* tmp = stackalloc float[4 * Lanes];
        var zero = Vector256<float>.Zero;
        for (int k = 0; k < K; k++)
        {
            var bk = Vector256.Create(bias[k]);
            float* mk = m + (long)k * T;
            for (int gi = 0; gi < groups; gi++)
            {
                float* mg = mk + gi * Lanes;
                var m00 = Vector256.Load(mg); var m01 = Vector256.Load(mg + xiStride);
                var m02 = Vector256.Load(mg + 2 * xiStride); var m03 = Vector256.Load(mg + 3 * xiStride);
                var m10 = Vector256.Load(mg + 4 * xiStride); var m11 = Vector256.Load(mg + 5 * xiStride);
                var m12 = Vector256.Load(mg + 6 * xiStride); var m13 = Vector256.Load(mg + 7 * xiStride);
                var m20 = Vector256.Load(mg + 8 * xiStride); var m21 = Vector256.Load(mg + 9 * xiStride);
                var m22 = Vector256.Load(mg + 10 * xiStride); var m23 = Vector256.Load(mg + 11 * xiStride);
                var m30 = Vector256.Load(mg + 12 * xiStride); var m31 = Vector256.Load(mg + 13 * xiStride);
                var m32 = Vector256.Load(mg + 14 * xiStride); var m33 = Vector256.Load(mg + 15 * xiStride);
                var s00 = m00 + m10 + m20; var s01 = m01 + m11 + m21; var s02 = m02 + m12 + m22; var s03 = m03 + m13 + m23;
                var s10 = m10 - m20 - m30; var s11 = m11 - m21 - m31; var s12 = m12 - m22 - m32; var s13 = m13 - m23 - m33;
                var y00 = s00 + s01 + s02 + bk; var y01 = s01 - s02 - s03 + bk;
                var y10 = s10 + s11 + s12 + bk; var y11 = s11 - s12 - s13 + bk;
                if (relu)
                {
                    // Same rule as the specification (v < 0 ? 0 : v), so NaN passes through.
                    y00 = Vector256.ConditionalSelect(Vector256.LessThan(y00, zero), zero, y00);
                    y01 = Vector256.ConditionalSelect(Vector256.LessThan(y01, zero), zero, y01);
                    y10 = Vector256.ConditionalSelect(Vector256.LessThan(y10, zero), zero, y10);
                    y11 = Vector256.ConditionalSelect(Vector256.LessThan(y11, zero), zero, y11);
                }
                if (start[gi] >= 0)
                {
                    float* row0 = y + start[gi] + k * plane;
                    StoreInterleaved(row0, y00, y01);
                    StoreInterleaved(row0 + OW, y10, y11);
                    continue;
                }
                Vector256.Store(y00, tmp); Vector256.Store(y01, tmp + 8);
                Vector256.Store(y10, tmp + 16); Vector256.Store(y11, tmp + 24);
                long g = g0 + gi * Lanes;
                for (int lane = 0; lane < Lanes && g + lane < total; lane++)
                {
                    Decode(g + lane, tilesH, tilesW, out int ln, out int lty, out int ltx);
                    float* yl = y + ((long)ln * K + k) * plane;
                    for (int r = 0; r < 2; r++)
                    {
                        int oy = 2 * lty + r;
                        if (oy >= OH) break;
                        for (int q = 0; q < 2; q++)
                        {
                            int ox = 2 * ltx + q;
                            if (ox < OW) yl[(long)oy * OW + ox] = tmp[(2 * r + q) * Lanes + lane];
                        }
                    }
                }
            }
        }
    }

    /// <summary>p[0 .. 15] = a0 b0 a1 b1 ... a7 b7: the left and right outputs of 8 tiles on one output row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreInterleaved(float* p, Vector256<float> a, Vector256<float> b)
    {
        var lo = Avx.UnpackLow(a, b);   // a0 b0 a1 b1 | a4 b4 a5 b5
        var hi = Avx.UnpackHigh(a, b);  // a2 b2 a3 b3 | a6 b6 a7 b7
        Avx.Store(p, Avx.Permute2x128(lo, hi, 0x20));
        Avx.Store(p + 8, Avx.Permute2x128(lo, hi, 0x31));
    }

    // ===== Weight gradient =====

    /// <summary>
    /// dw (K, C, 3, 3) += the filter gradient by Winograd F(2x2, 3x3) (Lavin and Gray 2016, section 5, training): the
    /// forward's tile Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A differentiated with respect to g gives, summed over tiles t,
    /// <code>
    ///   U'[k,t] = A dY[k,t] Aᵀ     (4x4 from the 2x2 dY tile; 0 past OH or OW)
    ///   V[c,t]  = Bᵀ d[c,t] B      (the forward's input transform)
    ///   M_ξ     = Σ_t U'_ξ[k,t] · V_ξ[c,t]   for each of the 16 positions ξ: a (K x tiles)·(tiles x C) GEMM
    ///   dw[k,c] += Gᵀ M[k,c] G     (3x3)
    /// </code>
    /// The tiles (numbered over the batch like the forward's) are cut into chunks of T; the chunks are split into a
    /// fixed number of contiguous partitions, each with its own M, walked in order, so the result depends on the
    /// shape only, not on the timing or the number of cores. Per chunk: V (16, T/16, C, 16) by the forward's
    /// <see cref="InputTransform"/>, U' (16, K, T), then M_ξ += U'_ξ · V_ξᵀ on the packed GEMM with beta = 1
    /// (U'_ξ packed as A, V_ξ read by <see cref="WinogradTilesB"/>). The partitions' M are summed in order at the end.
    /// </summary>
    internal static void BackwardWeight(float* dw, float* dy, float* x, ConvShape s)
    {
        int C = s.C, K = s.K, mPad = HostGemmKernels.PaddedRows(K);
        int tilesH = (s.OutH + 1) / 2, tilesW = (s.OutW + 1) / 2;
        long total = (long)s.N * tilesH * tilesW, mLen = (long)Positions * K * C;
        // Partitions: at most 8, at least 192 tiles each (every partition reads and writes all of its M, and the
        // partitions' M are summed at the end), and their M (16·K·C floats each) at most 64 MiB together.
        int parts = (int)Math.Clamp(Math.Min(total / 192, (1L << 24) / mLen), 1, 8);
        int T = (int)Math.Clamp((total + parts - 1) / parts + NR - 1, NR, BackwardChunkMax) / NR * NR;
        long chunks = (total + T - 1) / T;
        parts = (int)Math.Min(parts, chunks);
        float[] mRaw = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)(parts * mLen + 16)));
        var mHandle = System.Runtime.InteropServices.GCHandle.Alloc(mRaw, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            float* mAll = (float*)((mHandle.AddrOfPinnedObject() + 63) & ~(nint)63); // (parts, 16, K, C)
            nint mp = (nint)mAll, dyp = (nint)dy, xp = (nint)x;
            void Part(int p)
            {
                float* m = (float*)mp + p * mLen;
                // V (16, T/16, C, 16), then U' (16, mPad, T) as 16 packed A matrices.
                float* v = ThreadWork((long)Positions * (C + mPad) * T);
                float* u = v + (long)Positions * C * T;
                long first = chunks * p / parts;
                for (long ch = first; ch < chunks * (p + 1) / parts; ch++)
                {
                    long g0 = ch * T;
                    InputTransform(v, (float*)xp, s, g0, T, tilesH, tilesW, total);
                    GradientTransform(u, (float*)dyp, s, g0, T, tilesH, tilesW, total);
                    for (int xi = 0; xi < Positions; xi++)
                        HostGemmKernels.Run(u + (long)xi * mPad * T, K, T, new WinogradTilesB((nint)(v + (long)xi * C * T), C), 0, K, 0, C,
                            m + xi * (long)K * C, C, ch == first ? 0f : 1f, default, false);
                }
            }
            if (parts == 1 || Environment.ProcessorCount == 1) for (int p = 0; p < parts; p++) Part(p);
            else Parallel.For(0, parts, Part);
            FilterGradientTransform(dw, mAll, parts, K, C);
        }
        finally
        {
            mHandle.Free();
            System.Buffers.ArrayPool<float>.Shared.Return(mRaw);
        }
    }

    /// <summary>
    /// Most tiles per chunk of <see cref="BackwardWeight"/>: the GEMMs' depth, so packed A (K x T) stays below
    /// PackA's parallel threshold at K = 512 and one KC-deep block covers the chunk.
    /// </summary>
    internal static int BackwardChunkMax = 256;

    /// <summary>
    /// U' (16, PaddedRows(K), T) for tiles g0 .. g0+T-1, U'_ξ in the GEMM's packed-A layout (<see cref="HostGemmKernels.PackA"/>
    /// with one depth block: element (k, t) at (k/6)·6·T + t·6 + k%6, rows past K zero): U'_ξ[k, t] = (A dY[k,t] Aᵀ)_ξ
    /// with dY the 2x2 output-gradient tile (0 past OH, OW or the batch). With dY = [[a, b], [c, d]], the rows of A dY are [a, b], [a+c, b+d], [a-c, b-d], [-c, -d],
    /// and each row [p, q] becomes [p, p+q, p-q, -q]. Vector lanes run over 8 neighbouring tiles: interior groups load
    /// two dY rows and deinterleave even/odd columns; groups touching an edge go through a scalar gather.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GradientTransform(float* u, float* dy, ConvShape s, long g0, int T, int tilesH, int tilesW, long total)
    {
        int K = s.K, OH = s.OutH, OW = s.OutW, groups = T / Lanes, mPad = HostGemmKernels.PaddedRows(K);
        long plane = (long)OH * OW, xiStride = (long)mPad * T;
        float* d = stackalloc float[4 * Lanes];
        float* vals = stackalloc float[Positions * Lanes]; // one (k, group): U'_ξ of 8 tiles at ξ·8
        long* start = stackalloc long[groups];              // fast group: offset of its first dY element in plane k = 0; slow: -1
        long* offs = stackalloc long[groups * 4 * Lanes];   // slow group: each lane's 4 element offsets, -1 for 0
        for (int gi = 0; gi < groups; gi++)
        {
            long g = g0 + gi * Lanes;
            Decode(Math.Min(g, total - 1), tilesH, tilesW, out int n, out int ty, out int tx);
            bool fast = Avx2.IsSupported && g + Lanes <= total && tx + Lanes <= tilesW && 2 * ty + 1 < OH && 2 * tx + 2 * Lanes <= OW;
            start[gi] = fast ? (long)n * K * plane + (long)(2 * ty) * OW + 2 * tx : -1;
            if (fast) continue;
            long* o = offs + gi * 4 * Lanes;
            EdgeOffsets(o, g, total, tilesH, tilesW, step: 2, size: 2, origin: 0, OH, OW, (long)K * plane, OW);
        }
        for (int k = K; k < mPad; k++)
            for (int xi = 0; xi < Positions; xi++)
            {
                float* pad = u + xi * xiStride + (long)(k - k % MR) * T + k % MR;
                for (int t = 0; t < T; t++) pad[t * MR] = 0f;
            }
        for (int k = 0; k < K; k++)
        {
            float* dyk = dy + k * plane, uk = u + (long)(k - k % MR) * T + k % MR;
            for (int gi = 0; gi < groups; gi++)
            {
                Vector256<float> a, b, c, e;
                if (start[gi] >= 0)
                {
                    float* p0 = dyk + start[gi];
                    Deinterleave(p0, out a, out b);
                    Deinterleave(p0 + OW, out c, out e);
                }
                else
                {
                    long* o = offs + gi * 4 * Lanes;
                    for (int i = 0; i < 4 * Lanes; i++) d[i] = o[i] >= 0 ? dyk[o[i]] : 0f;
                    a = Vector256.Load(d); b = Vector256.Load(d + 8); c = Vector256.Load(d + 16); e = Vector256.Load(d + 24);
                }
                GradientRow(vals, a, b);
                GradientRow(vals + 4 * Lanes, a + c, b + e);
                GradientRow(vals + 8 * Lanes, a - c, b - e);
                GradientRow(vals + 12 * Lanes, -c, -e);
                // Lane l is tile gi·8 + l: stride MR in the packed panel.
                float* dst = uk + gi * Lanes * MR;
                for (int xi = 0; xi < Positions; xi++)
                {
                    float* src = vals + xi * Lanes, dx = dst + xi * xiStride;
                    dx[0] = src[0]; dx[MR] = src[1]; dx[2 * MR] = src[2]; dx[3 * MR] = src[3];
                    dx[4 * MR] = src[4]; dx[5 * MR] = src[5]; dx[6 * MR] = src[6]; dx[7 * MR] = src[7];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void GradientRow(float* dst, Vector256<float> p, Vector256<float> q)
    {
        Vector256.Store(p, dst);
        Vector256.Store(p + q, dst + Lanes);
        Vector256.Store(p - q, dst + 2 * Lanes);
        Vector256.Store(-q, dst + 3 * Lanes);
    }

    /// <summary>
    /// dw[k, c] += Gᵀ M[k, c] G with M = Σ_p m[p] (m (parts, 16, K, C), summed in partition order). With
    /// Gᵀ = [[1, ½, ½, 0], [0, ½, -½, 0], [0, ½, ½, 1]], each row (and then column) [m0, m1, m2, m3] becomes
    /// [m0 + ½(m1 + m2), ½(m1 - m2), ½(m1 + m2) + m3]. One slice of output channels per task.
    /// </summary>
    static void FilterGradientTransform(float* dw, float* m, int parts, int K, int C)
    {
        long plane = (long)K * C, mLen = Positions * plane;
        nint dwp = (nint)dw, mp = (nint)m;
        int tasks = plane < 1 << 14 ? 1 : Math.Min(K, 4 * Environment.ProcessorCount);
        // m[0] += m[1], then m[2], ...: the order of the scalar sum, in vectors, one slice of m per task.
        void Sum(int i)
        {
            long e0 = mLen * i / tasks, e1 = mLen * (i + 1) / tasks, e = e0;
            float* m0 = (float*)mp;
            for (; e + 8 <= e1; e += 8)
            {
                var acc = Vector256.Load(m0 + e);
                for (int p = 1; p < parts; p++) acc += Vector256.Load(m0 + p * mLen + e);
                Vector256.Store(acc, m0 + e);
            }
            for (; e < e1; e++)
                for (int p = 1; p < parts; p++) m0[e] += m0[p * mLen + e];
        }
        if (parts > 1)
        {
            if (tasks == 1) Sum(0);
            else Parallel.For(0, tasks, Sum);
        }
        void Rows(int k0, int k1)
        {
            float* mm = stackalloc float[Positions];
            float* t = stackalloc float[12];
            for (int k = k0; k < k1; k++)
                for (int c = 0; c < C; c++)
                {
                    long kc = (long)k * C + c;
                    for (int xi = 0; xi < Positions; xi++)
                    {
                        mm[xi] = ((float*)mp)[xi * plane + kc];
                    }
                    // Gᵀ M (3 x 4), column by column.
                    for (int j = 0; j < 4; j++)
                    {
                        float m0 = mm[j], m1 = mm[4 + j], m2 = mm[8 + j], m3 = mm[12 + j];
                        t[j] = m0 + 0.5f * (m1 + m2);
                        t[4 + j] = 0.5f * (m1 - m2);
                        t[8 + j] = 0.5f * (m1 + m2) + m3;
                    }
                    // (Gᵀ M) G (3 x 3), row by row.
                    float* g = (float*)dwp + kc * 9;
                    for (int i = 0; i < 3; i++)
                    {
                        float t0 = t[4 * i], t1 = t[4 * i + 1], t2 = t[4 * i + 2], t3 = t[4 * i + 3];
                        g[3 * i] += t0 + 0.5f * (t1 + t2);
                        g[3 * i + 1] += 0.5f * (t1 - t2);
                        g[3 * i + 2] += 0.5f * (t1 + t2) + t3;
                    }
                }
        }
        if (tasks == 1) Rows(0, K);
        else Parallel.For(0, tasks, i => Rows(K * i / tasks, K * (i + 1) / tasks));
    }
}

/// <summary>
/// op(B)(p, j) = V_ξ[channel j, tile p] for the weight gradient's M_ξ += U'_ξ · V_ξᵀ, read from the input transform's
/// layout (T/16, C, 16) (tile p's value for channel j at (p/16)·C·16 + j·16 + p%16): every 16 x 16 block is a
/// transpose of a (channels, tiles) block, done as four 8 x 8 register transposes.
/// </summary>
internal readonly unsafe struct WinogradTilesB(nint v, int channels) : IPackB
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(float* dst, int pc, int kc, int jc, int nc)
    {
        const int NR = HostGemmKernels.NR;
        float* v0 = (float*)v;
        long panel = (long)channels * NR;
        bool aligned = Avx.IsSupported && pc % NR == 0 && kc % NR == 0;
        for (int jp = 0; jp < nc; jp += NR, dst += (long)kc * NR)
        {
            int w = Math.Min(NR, nc - jp), j0 = jc + jp;
            if (aligned && w == NR)
            {
                for (int p = 0; p < kc; p += NR)
                {
                    float* src = v0 + (pc + p) / NR * panel + (long)j0 * NR, d = dst + (long)p * NR;
                    Transpose8(src, d);
                    Transpose8(src + 8, d + 8 * NR);
                    Transpose8(src + 8 * NR, d + 8);
                    Transpose8(src + 8 * NR + 8, d + 8 * NR + 8);
                }
                continue;
            }
            for (int p = 0; p < kc; p++)
            {
                int tile = pc + p;
                float* src = v0 + tile / NR * panel + tile % NR, d = dst + (long)p * NR;
                int t = 0;
                for (; t < w; t++) d[t] = src[(long)(j0 + t) * NR];
                for (; t < NR; t++) d[t] = 0f;
            }
        }
    }

    /// <summary>d[i·16 + j] = s[j·16 + i] for i, j &lt; 8: an 8 x 8 transpose between row strides of 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8(float* s, float* d)
    {
        const int L = HostGemmKernels.NR;
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + L);
        var r2 = Avx.LoadVector256(s + 2 * L); var r3 = Avx.LoadVector256(s + 3 * L);
        var r4 = Avx.LoadVector256(s + 4 * L); var r5 = Avx.LoadVector256(s + 5 * L);
        var r6 = Avx.LoadVector256(s + 6 * L); var r7 = Avx.LoadVector256(s + 7 * L);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(d + L, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * L, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(d + 3 * L, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * L, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(d + 5 * L, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * L, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(d + 7 * L, Avx.Permute2x128(u3, u7, 0x31));
    }
}
